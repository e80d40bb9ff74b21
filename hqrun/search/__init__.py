"""AutoQ search: per-layer, per-slot quantizer search on Ray Tune (``hqrun search``).

Plain-Python pieces (``space``, ``objectives``, ``pareto``, ``blocks``, ``trial``, ``journal``)
are importable without Ray; ``runner`` wires them to Ray Tune, ``command`` is the CLI entry,
``backend`` adapts hqrun.models/hqrun.cost and ``toy`` is a self-contained stand-in.
Nothing heavy is imported here (see docs/search.md).
"""
