"""A finished search's record damaged: journal lines, search.json, the reference cache.

Each case copies a finished search directory (settings, float reference, a three-trial
journal; :func:`finished_search`), damages one file and reruns the same ``hqrun search``, which
resumes it. A journal line that cannot be used is a warning naming the file, line and reason,
and the search goes on (status 0: two trials are still enough for ``search.max_trials=2``); a
damaged settings file or reference cache stops it with one paragraph (status 2).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from catalogue import QUICK_SEARCH, Case, Env, remember

#: The search every journal case resumes (its fingerprint is in the template's search.json).
def search_argv(e: Env, run: Path) -> list[str]:
    return ["search", "data=jets_file", f"data.path={e.data}", *QUICK_SEARCH, f"hydra.run.dir={run}"]


def finished_search(root: Path, data: Path) -> Path:
    """A finished search directory as `hqrun search` leaves it, without running one: the
    settings fingerprint of :func:`search_argv`'s command, a float reference and three trial
    records drawn from the real search space and priced by the real cost model."""
    import torch
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from hqrun.config import validate_config
    from hqrun.search.backend import HqrunBackend
    from hqrun.search.objectives import cost_of, score_rule
    from hqrun.search.runner import fingerprint
    from hqrun.search.space import build_space
    from hqrun.search.trial import float_plan

    overrides = ["command=search", "data=jets_file", f"data.path={data}", *QUICK_SEARCH]
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="hqrun.conf", version_base="1.3"):
        cfg = validate_config(compose("config", overrides=overrides))
    run = root / "search"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run / "search.json").write_text(json.dumps(
        {"fingerprint": fingerprint(cfg.search), "config": OmegaConf.to_container(cfg.search)}))
    backend = HqrunBackend(cfg.model, cfg.cost)
    reference = backend.build(float_plan(), {})
    torch.save(reference.state_dict(), run / "reference.pt")
    info = backend.reference_cost(reference)
    (run / "reference.json").write_text(json.dumps(
        {"accuracy": 0.6, "cost": info.totals, "layer_costs": info.layers}))
    space = build_space(cfg.search.space, backend.describe())
    rule = score_rule("forgiving", cfg.search.goal)
    ref_cost = rule.reference(cost_of(info.totals, "energy"))
    rng = random.Random(0)
    lines = []
    for i in range(3):
        config = {c.key: rng.choice(c.options) for c in space.choices}
        cost = cost_of(backend.cost(backend.build(space.plan(config), {})).totals, "energy")
        accuracy = 0.5 + 0.05 * i
        lines.append(json.dumps({
            "event": "trial", "trial_id": f"part_000-t{i}", "block": None, "status": "ok",
            "config": config, "plan": space.plan(config), "widths": {}, "accuracy": accuracy,
            "cost": cost, "score": rule.score(accuracy, ref_cost, cost), "epochs": 1,
            "best_epoch": 1, "time": 1.0, "error": None, "costs": {}, "finished_at": 0.0},
            sort_keys=True))
    (run / "trials.jsonl").write_text("".join(line + "\n" for line in lines))
    (run / "search_summary.json").write_text(json.dumps({"run_dir": str(run), "trials": 3}))
    (run / "job_status.json").write_text(json.dumps({"status": "ok", "command": "search"}))
    return run


def damage_line(number: int, replace) -> callable:
    """Replace journal line ``number`` (1-based) with ``replace(old line)`` (bytes)."""
    def argv(e: Env) -> list[str]:
        run = e.finished_search()
        lines = (run / "trials.jsonl").read_bytes().split(b"\n")
        lines[number - 1] = replace(lines[number - 1])
        (run / "trials.jsonl").write_bytes(b"\n".join(lines))
        return search_argv(e, run)
    return argv


def with_record(number: int, **changes) -> callable:
    def replace(line: bytes) -> bytes:
        record = json.loads(line)
        for key, value in changes.items():
            if value is _DROP:
                record.pop(key, None)
            else:
                record[key] = value
        return json.dumps(record).encode()
    return damage_line(number, replace)


_DROP = object()


def damage_file(name: str, content, keep: bool = True) -> callable:
    """Overwrite (or, for ``content`` None, make a directory of) ``name`` in the search copy;
    ``keep``: the command must refuse, leaving the copy as it was."""
    def argv(e: Env) -> list[str]:
        run = e.finished_search()
        path = run / name
        if content is None:
            path.unlink()
            path.mkdir()
        else:
            path.write_bytes(content(path) if callable(content) else content)
        return search_argv(e, remember(e, run) if keep else run)
    return argv


def crafted_reference(e: Env) -> list[str]:
    from catalogue.files import write_evil

    run = e.finished_search()
    write_evil(run / "reference.pt", e.tmp / "PWNED")
    return search_argv(e, remember(e, run))


def _no_marker(e: Env) -> None:
    assert not (e.tmp / "PWNED").exists(), "the reference cache's code ran"


#: The search resumes (and starts a local Ray in this process): the slow lane runs these.
WARNS = dict(code=0, slow=True)

CASES = [
    Case("journal-corrupted-middle-line", damage_line(2, lambda l: l[:25] + b"\x00garbage"),
         "trials.jsonl, line 2: not valid JSON", **WARNS, subprocess=True),
    Case("journal-line-a-list", damage_line(2, lambda l: b"[1, 2, 3]"),
         "line 2: valid JSON but a list, not a record; line skipped", **WARNS),
    Case("journal-line-a-number", damage_line(2, lambda l: b"42"),
         "line 2: valid JSON but a int, not a record", **WARNS),
    Case("journal-line-a-string", damage_line(2, lambda l: b'"trial"'),
         "line 2: valid JSON but a str, not a record", **WARNS),
    Case("journal-score-not-a-number", with_record(2, score="high"),
         "score 'high' is not a number (cleared); the trial is kept", **WARNS),
    Case("journal-accuracy-a-bool", with_record(2, accuracy=True), "accuracy True is not a number",
         **WARNS),
    Case("journal-unknown-status", with_record(2, status="weird"),
         "status 'weird' is not one of ok, stopped, failed (read as failed)", **WARNS),
    Case("journal-config-not-mapping", with_record(2, config="x"),
         "trial record whose config is str, not a mapping; line skipped", **WARNS),
    Case("journal-without-trial-id", with_record(2, trial_id=_DROP),
         "trial record without a trial_id; line skipped", **WARNS),
    Case("journal-unknown-event", with_record(2, event="party"),
         "record with unknown event 'party'; line skipped", **WARNS),
    Case("journal-score-without-cost", with_record(2, cost=None),
         "score without accuracy and cost (cleared", **WARNS),
    Case("journal-not-utf8-line", damage_line(2, lambda l: b"\xff\xfe" + l[2:]),
         "line 2: not UTF-8 text; line skipped", **WARNS),
    Case("journal-torn-last-line", damage_file("trials.jsonl", lambda p: p.read_bytes()[:-40],
                                               keep=False),
         "cut short when a search was killed mid-write", **WARNS),
    Case("journal-block-done-malformed", damage_line(4, lambda l: b'{"event": "block_done"}\n'),
         "block_done record without an integer block", **WARNS),
    Case("journal-a-directory", damage_file("trials.jsonl", None),
         "trials.jsonl cannot be read (Is a directory)"),
    Case("search-json-truncated", damage_file("search.json", lambda p: p.read_bytes()[:20]),
         "search.json is unreadable (JSONDecodeError", subprocess=True),
    Case("search-json-a-list", damage_file("search.json", b"[1, 2]"),
         "search.json is unreadable (valid JSON but not a record with a fingerprint)",
         leaves_run_dir=True),
    Case("search-json-not-utf8", damage_file("search.json", b"\xff\xfe{}"),
         "search.json is unreadable (UnicodeDecodeError"),
    Case("search-json-other-settings", damage_file("search.json",
                                                   b'{"fingerprint": "0123456789abcdef"}'),
         "holds a different search"),
    Case("search-reference-truncated", damage_file("reference.pt", lambda p: p.read_bytes()[:100]),
         "is not a readable model file"),
    Case("search-reference-json-truncated", damage_file("reference.json", b'{"accuracy": 0.5'),
         "reference.json is unreadable"),
    Case("search-reference-crafted", crafted_reference,
         "cannot be read as data", check=_no_marker),
]
