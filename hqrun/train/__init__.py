"""Training: Lightning module, in-memory batches, metrics, plots and the ``hqrun train`` command.

``fit_and_evaluate`` (in :mod:`hqrun.train.runner`) is the reusable entry point; Lightning is
imported only when it is called, so importing this package stays cheap.
"""

from hqrun.train.config import TrainerConfig

__all__ = ["TrainerConfig", "fit_and_evaluate"]


def __getattr__(name: str):
    if name == "fit_and_evaluate":
        from hqrun.train.runner import fit_and_evaluate

        return fit_and_evaluate
    raise AttributeError(name)
