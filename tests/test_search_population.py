"""Population trials: K configurations trained at once report what their lone trials report."""

from __future__ import annotations

import pytest
import torch

from hqrun.search.backend import HqrunBackend
from hqrun.search.objectives import ForgivingFactor
from hqrun.search.population_trials import run_population_trials
from hqrun.search.space import build_space
from hqrun.search.trial import Split, TrialData, TrialFailed, TrialSettings, run_trial, train_model

torch.set_num_threads(1)

SUPPORTED = {"kernel": ["quantized_bits(4,0,1,alpha=1)", "quantized_bits(6,0,1,alpha=1)",
                        "quantized_bits(8,0,1,alpha=1)"],
             "bias": ["quantized_bits(4,0,1,alpha=1)", "quantized_bits(8,3,1,alpha=1)"],
             "activation": ["quantized_relu(3,1)", "quantized_relu(4,2)", "quantized_relu(6,2)"]}


def blobs(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, 16, generator=torch.Generator().manual_seed(99))
    y = torch.randint(0, 5, (n,), generator=g)
    return Split(centres[y] + torch.randn(n, 16, generator=g), y)


def setup():
    backend = HqrunBackend({"name": "jet_dnn"})
    # The part of the deployable menu that population training batches today.
    menu = {slot: {spec: int(spec.split("(")[1].split(",")[0]) for spec in specs}
            for slot, specs in SUPPORTED.items()}
    space = build_space({"menu": menu}, backend.describe())
    data = TrialData(blobs(1024, 1), blobs(512, 2))
    reference = backend.build({"name": "float"}, {})
    train_model(reference, data, 1, 256, 1e-3, 0)
    ref_cost = backend.reference_cost(reference).totals["energy"]
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    settings = TrialSettings(3, 256, 3e-3, "energy", ForgivingFactor(), ref_cost, seed=5, patience=0,
                             trainer="lightning")
    return backend, space, data, state, settings


def config(space, pick: int) -> dict:
    out = {}
    for c in space.choices:
        options = [o for o in c.options if o in SUPPORTED[c.key.rsplit("__", 1)[1]]]
        assert options, c.key
        out[c.key] = options[(pick + len(c.key)) % len(options)]
    return out


def test_population_trials_report_what_lone_trials_report() -> None:
    backend, space, data, state, settings = setup()
    configs = [config(space, i) for i in range(3)]
    assert len({tuple(sorted(c.items())) for c in configs}) == 3
    together: list[list[dict]] = [[] for _ in configs]
    lasts = run_population_trials(configs, space, backend, data, state, settings,
                                  [rows.append for rows in together])
    for cfg, rows, last in zip(configs, together, lasts):
        alone: list[dict] = []
        solo_last = run_trial(cfg, space, backend, data, state, settings, alone.append)
        assert [r["epoch"] for r in rows] == [r["epoch"] for r in alone] == [1, 2, 3]
        for a, b in zip(alone, rows):
            assert a["cost"] == b["cost"]
            for key in ("loss", "accuracy", "score"):
                assert b[key] == pytest.approx(a[key], abs=2e-4), (key, a, b)
        assert last["accuracy"] == pytest.approx(solo_last["accuracy"], abs=2e-4)


def test_a_failing_configuration_fails_alone() -> None:
    backend, space, data, state, settings = setup()
    configs = [config(space, 0), config(space, 1)]

    def report_nan(row: dict) -> None:
        raise TrialFailed("injected")

    rows: list[dict] = []
    lasts = run_population_trials(configs, space, backend, data, state, settings, [report_nan, rows.append])
    assert isinstance(lasts[0], TrialFailed)
    assert isinstance(lasts[1], dict) and [r["epoch"] for r in rows] == [1, 2, 3]
