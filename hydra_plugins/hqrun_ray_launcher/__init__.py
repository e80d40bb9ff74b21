"""hqrun's Ray launcher for Hydra multiruns (``hydra/launcher=ray``).

Lives in the ``hydra_plugins`` namespace because Hydra only instantiates launchers from there.
"""
