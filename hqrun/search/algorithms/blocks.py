"""AutoQKeras's block scheduler: the model is searched block by block (regexes of layer names),
each block's best choice frozen before the next; trials are shared out by block cost
(:mod:`hqrun.search.blocks`). Each block is one Ray Tune run; finished blocks are recorded in
the journal (``block_done``), so a resumed search skips them."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from hqrun import atomic
from hqrun.errors import SearchError
from hqrun.search.algorithms import SearchAlgorithm, register_algorithm
from hqrun.search.blocks import Block, schedule_blocks
from hqrun.search.objectives import cost_of
from hqrun.search.ranking import best_record

__all__ = ["BlockSearch", "write_schedule"]


def _key(assign: Mapping) -> dict:
    return {f"{layer}::{slot}": v for (layer, slot), v in assign.items()}


def _unkey(d: Mapping) -> dict:
    return {tuple(k.split("::", 1)): v for k, v in d.items()}


def write_schedule(run_dir: Path, blocks: list[Block]) -> None:
    atomic.write_json(run_dir / "blocks.json",
                      [{"index": b.index, "pattern": b.pattern, "layers": list(b.layers),
                        "cost": b.cost, "trials": b.trials} for b in blocks])


@register_algorithm("blocks")
class BlockSearch(SearchAlgorithm):
    """Block-wise search; each block sampled randomly or by TPE (``search.blocks.search``)."""

    def validate(self, cfg):  # noqa: ANN001, ANN201
        if cfg.blocks.search not in ("random", "bayesian"):
            raise SearchError("search.blocks.search must be random or bayesian.")

    def check_space(self, cfg, space):  # noqa: ANN001, ANN201
        # regexes are checked now; the block costs need the float reference
        searched = sorted({t[0] for c in space.choices for t in c.targets})
        schedule_blocks(list(cfg.blocks.patterns or []), searched, {}, 1.0, 1, cfg.blocks.schedule)

    def run(self, run):  # noqa: ANN001, ANN201
        cfg, space, goal = run.cfg, run.space, run.goal
        bcfg = cfg.blocks
        searched = [layer.name for layer in space.layers
                    if any(t[0] == layer.name for c in space.choices for t in c.targets)]
        layer_costs = {name: cost_of(c, goal) if goal in c else float(c.get("total", 0.0))
                       for name, c in run.reference.layer_costs.items()}
        blocks = schedule_blocks(list(bcfg.patterns), searched, layer_costs, run.reference_cost,
                                 int(cfg.max_trials), bcfg.schedule, int(bcfg.min_trials))
        write_schedule(run.run_dir, blocks)
        done_blocks = run.journal.blocks_done()
        frozen: dict = {}
        claimed: set[str] = set()
        last = None
        for blk in blocks:
            members = [n for n in blk.layers if n not in claimed]
            claimed.update(members)
            if blk.index in done_blocks:
                frozen.update(_unkey(done_blocks[blk.index]["frozen"]))
                last = blk.index
                continue
            sub = space.restrict(members, frozen)
            if not sub.choices:
                continue
            last = blk.index
            done = run.finished(blk.index)
            progress = run.progress(blk.trials, done)
            if cfg.progress:
                print(f"[search] block {blk.index} {blk.pattern!r}: layers {', '.join(members)}, "
                      f"cost {blk.cost:.4g} of {run.reference_cost:.4g}, {blk.trials} trials")
            remaining = blk.trials - len(done)
            if remaining > 0:
                run.run_trials(remaining, progress, searcher=bcfg.search, previous=done,
                               seed=run.seed + len(done), block=blk.index, space=sub)
            progress.close()
            best = best_record(run.journal.trials(blk.index))
            if best is None:
                raise SearchError(f"every trial of block {blk.index} ({blk.pattern!r}) failed; see "
                                  f"{run.run_dir / 'trials.csv'} for the errors.")
            frozen.update(sub.assignment(best["config"]))
            run.journal.append({"event": "block_done", "block": blk.index, "pattern": blk.pattern,
                                "trial_id": best["trial_id"], "frozen": _key(frozen)})
        return frozen, last
