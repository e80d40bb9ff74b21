"""Search spaces, algorithms, budgets and cost caps: refused before the float reference trains
or any trial starts."""

from __future__ import annotations

from catalogue import QUICK_SEARCH, Case, Env, nothing_outside


def search(*more: str):
    return lambda e: ["search", "data=jets_file", f"data.path={e.data}", *QUICK_SEARCH, *more]


def _user_conf(e: Env, space: str):
    """A user's config directory (``--config-dir``) holding the search space ``mine``."""
    folder = e.tmp / "conf"
    e.write("conf/search/space/mine.yaml", space + "\n")
    return folder


CASES = [
    # ------------------------------------------------------------ the space
    Case("space-menu-empty-override", search("search.space.menu={}"),
         "search.space.menu={} changes nothing", subprocess=True),
    Case("space-menu-emptied", lambda e: ["search", "--config-dir", str(_user_conf(e, "menu: {}")),
                                          *search("search/space=mine")(e)[1:]],
         "search.space.menu is empty ({}), which leaves nothing to search"),
    Case("space-menu-kind-empty", search("search.space.menu.kernel={}"),
         "search.space.menu.kernel={} changes nothing"),
    Case("space-menu-unknown-kind", search("+search.space.menu.weights={binary: 1}"),
         "search.space.menu has an unknown kind 'weights'"),
    Case("space-menu-unknown-quantizer", search("+search.space.menu.kernel.quantized_bitz(4,0,1)=4"),
         "quantized_bitz"),
    Case("space-menu-zero-cost", search("search.space.menu.kernel.binary=0"),
         "needs a positive bit cost"),
    Case("space-menu-not-mapping", search("~search.space.menu", "+search.space.menu=7"),
         "search.space.menu: Cannot assign int"),
    Case("space-limit-regex-matches-nothing", search("+search.space.limits.dense_9=[4]"),
         "dense_9"),
    Case("space-limit-needs-plus", search("search.space.limits.Dense=[1,1]"),
         "add it with a leading '+' (+search.space.limits.Dense=[1,1])"),
    Case("space-limit-leaves-no-choice", search("+search.space.limits.Dense=[1,1]"),
         "Raise the limit or add a cheaper spec to the menu"),
    Case("space-layers-match-nothing", search("search.space.layers=['^nope$']"), "'^nope$'"),
    Case("space-width-mode", search("search.space.width.mode=grow"), "grow"),
    Case("space-width-multiplier-zero", search("search.space.width.mode=layer",
                                               "search.space.width.multipliers=[0,1]"), "0"),
    # ------------------------------------------------------------ algorithm and objective
    Case("search-algorithm-unknown", search("search.algorithm=genetic"),
         "search.algorithm='genetic'; use one of asha, bayesian, beta, blocks, evolution, random"),
    Case("search-beta-negative", search("search=beta", "search.beta.grid=[1e-6,-1e-6]"),
         "search.beta.grid=[1e-06, -1e-06] must list one or more finite beta values >= 0"),
    Case("search-beta-min-above-max", search("search=beta", "search.beta.beta_min=1e-4",
                                             "search.beta.beta_max=1e-6"),
         "search.beta.beta_min=0.0001 is larger than search.beta.beta_max=1e-06"),
    Case("search-objective-unknown", search("search.objective=pareto2"),
         "search.objective='pareto2'; use one of forgiving, pareto, accuracy"),
    Case("search-goal-unknown", search("search.goal.type=power"),
         "search.goal.type='power'; use one of bits, energy, ebops"),
    Case("search-accuracy-without-cap", search("search.objective=accuracy"),
         "search.objective=accuracy ranks trials by accuracy alone, so it needs a cost cap"),
    Case("search-cap-with-bayesian", search("search.algorithm=bayesian", "search.goal.max_cost=20000"),
         "works with search.algorithm=asha, evolution or random"),
    Case("search-cap-negative", search("search.goal.max_cost=-5"), "search.goal.max_cost=-5"),
    Case("search-cap-zero", search("search.goal.max_cost=0"), "search.goal.max_cost=0"),
    Case("search-goal-rate-one", search("search.goal.rate=1"),
         "search.goal.rate=1.0 must be positive and != 1"),
    Case("search-goal-rate-negative", search("search.goal.rate=-2"), "search.goal.rate=-2.0"),
    Case("search-goal-stress-zero", search("search.goal.stress=0"),
         "search.goal.stress=0.0 must be > 0"),
    Case("search-retrain-unknown", search("search.retrain=all"),
         "search.retrain='all'; use winner, front or none"),
    Case("search-trainer-unknown", search("search.trainer=keras"),
         "search.trainer='keras'; use lean or lightning"),
    Case("search-blocks-search-unknown", search("search.algorithm=blocks",
                                                "search.blocks.search=evolution"),
         "search.blocks.search must be random or bayesian"),
    Case("search-blocks-pattern-matches-nothing", search("search.algorithm=blocks",
                                                         "search.blocks.patterns=['^nope$']"), "'^nope$'"),
    Case("search-blocks-schedule-unknown", search("search.algorithm=blocks",
                                                  "search.blocks.patterns=['^dense_1$']",
                                                  "search.blocks.schedule=random"), "'random'"),
    Case("search-evolution-population-zero", search("search.algorithm=evolution",
                                                    "search.evolution.population=0"),
         "search.evolution.population=0 must be >= 1"),
    Case("search-evolution-tournament-zero", search("search=evolution",
                                                    "search.evolution.tournament=0"),
         "search.evolution.tournament=0 must be >= 1"),
    # ------------------------------------------------------------ budgets
    Case("search-max-trials-zero", search("search.max_trials=0"), "search.max_trials=0 must be >= 1"),
    Case("search-epochs-zero", search("search.epochs=0"), "search.epochs=0 must be >= 1"),
    Case("search-batch-size-zero", search("search.batch_size=0"), "search.batch_size=0 must be >= 1"),
    Case("search-reference-epochs-zero", search("search.reference_epochs=0"),
         "search.reference_epochs=0"),
    Case("search-final-epochs-zero", search("search.retrain=winner", "search.final_epochs=0"),
         "search.final_epochs=0"),
    Case("search-patience-negative", search("search.patience=-1"), "search.patience=-1"),
    Case("search-learning-rate-zero", search("search.learning_rate=0"), "search.learning_rate=0"),
    Case("search-retries-negative", search("search.retries=-1"), "search.retries=-1"),
    Case("search-train-samples-zero", search("search.train_samples=0"), "search.train_samples=0"),
    Case("search-cpus-per-trial-zero", search("search.ray.cpus_per_trial=0"),
         "search.ray.cpus_per_trial=0"),
    Case("search-num-cpus-zero", search("search.ray.num_cpus=0"), "search.ray.num_cpus=0"),
    Case("search-asha-grace-zero", search("search=asha", "search.asha.grace_period=0"),
         "search.asha.grace_period=0"),
    Case("search-asha-reduction-one", search("search=asha", "search.asha.reduction_factor=1"),
         "search.asha.reduction_factor=1"),
    Case("search-bayesian-startup-zero", search("search=bayesian", "search.bayesian.n_startup_trials=-1"),
         "search.bayesian.n_startup_trials=-1"),
    Case("search-run-dir-climbs-out", search("search.run_dir=../s"), "search.run_dir='../s' climbs out",
         check=nothing_outside("s")),
]
