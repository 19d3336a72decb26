"""The held-out study: every method on the report split, five seeds, settings frozen from the tuning split.

    python -m experiments.study.run [--out runs/study]     # resumable; about 60 min alone on 2 cores
    python -m experiments.study.make_report                # every table and figure, from the committed records

Report split: testbed test problems 200:500 (never used to choose a setting); seeds 0-4; rollouts as the demo's
(T = 0.6, top-k 20, top-p 0.95, 48 new tokens). Best-of-N and self-consistency are nested: one pool of 32 samples
per problem and seed gives every N in 1, 2, 4, 8, 16, 32. The ∇-Reasoner runs at the official settings (the demo's:
the gradient-norm test off), at learning rate 0.3 (chosen on the tuning split for every reward that ranks:
experiments/testbed/results/reward_kinds.md), and, with the likelihood verifier, at the settings tuned on the
tuning split (experiments/study/tuning.py), k times over with the best-rewarded run kept (``nabla_best@k``), and
with DTO's gradient through the context only (``reward_options`` target_gradient off). Each run is a resumable ``nabla-jax eval`` directory; when it is complete its records (gzipped, texts dropped) and
fingerprint are copied to ``experiments/study/records/NAME/``, which ``nabla-jax report`` reads directly. Run it
alone: the records' wall times are the warm time per problem, and a machine shared with other work skews them.
"""

from __future__ import annotations

import os

from experiments.study import driver

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDS = os.path.join(HERE, "records")
PROBLEMS, SEEDS, NEW_TOKENS = "200:500", (0, 1, 2, 3, 4), 48
POOL = (1, 2, 4, 8, 16, 32)
TUNED_LR = 0.3
VERIFIER = "likelihood:testbed:verifier"
TUNED = "tuned"  # read from the tuning split's records when the run starts (tuning_report; results/tuning.md)
# name -> (reward, methods, changes to the ∇-Reasoner's settings, budgets N, reward reading options, method options)
RUNS = {
    "outcome": ("testbed:outcome", "greedy,sc,bon,wbon,nabla@8,nabla_no_dto@8", {}, POOL, {}, {}),
    "outcome_lr": ("testbed:outcome", "nabla@8", {"learning_rate": TUNED_LR}, POOL, {}, {}),
    "likelihood": (VERIFIER, "bon,nabla@8,nabla_no_dto@8,mix@8", {}, POOL, {}, {}),
    "likelihood_lr": (VERIFIER, "nabla@8", {"learning_rate": TUNED_LR}, POOL, {}, {}),
    "prm": ("testbed:prm", "bon,beam@8,pf@8,nabla@8", {}, POOL, {}, {}),
    "prm_lr": ("testbed:prm", "nabla@8", {"learning_rate": TUNED_LR}, POOL, {}, {}),
    # the ∇-Reasoner given k times the compute: k independent runs at lr 0.3, the best-rewarded kept
    "likelihood_best": (VERIFIER, "nabla_best", {"learning_rate": TUNED_LR}, (1, 2, 4), {}, {}),
    # DTO's gradient through the context only (as a scalar reward's), the reward's values unchanged
    "likelihood_context": (VERIFIER, "nabla@8", {"learning_rate": TUNED_LR}, POOL,
                           {"target_gradient": False}, {}),
    "likelihood_tuned": (VERIFIER, "nabla@8", TUNED, POOL, {}, {}),
    "likelihood_wbon": (VERIFIER, "wbon", {}, POOL, {}, {"wbon_temperature": TUNED}),
    "prm_dvts": ("testbed:prm", "dvts@8", {}, POOL, {}, {}),
    "prm_rgd": ("testbed:prm", "rgd@4", {}, POOL, {}, {}),
}


def frozen(changes: dict | str, options: dict) -> tuple[dict, dict]:
    """The run's settings with every ``TUNED`` one read from the tuning split's committed records."""
    from experiments.study import tuning_report
    from experiments.study.tuning import BASE_LR
    from experiments.study.tuning import RECORDS as TUNING

    if TUNED not in (changes, options.get("wbon_temperature")):
        return changes, options
    cells = tuning_report.load_cells(TUNING)
    if changes == TUNED:  # the tuning split's cells change its base, the demo's settings at BASE_LR
        changes = {"learning_rate": BASE_LR, **tuning_report.tuned_changes(cells)}
    if options.get("wbon_temperature") == TUNED:
        options = {**options, "wbon_temperature": tuning_report.wbon_temperature(cells)}
    return changes, options


def run(out: str, names) -> None:
    from nabla_jax.bundled import resolve_spec
    from nabla_jax.commands.demo import DEMO_NABLA
    from nabla_jax.evaluation.context import DecodeSettings
    from nabla_jax.evaluation.runner import run_eval

    settings = DecodeSettings.of(DEMO_NABLA.replace(max_new_tokens=NEW_TOKENS))
    for name in names:
        reward, methods, changes, ns, reward_options, options = RUNS[name]
        changes, options = frozen(changes, options)
        print(f"{name}: {methods} with {reward}; settings changed from the demo's: {changes}; options {options}",
              flush=True)
        directory = os.path.join(out, name)
        run_eval("testbed", methods, resolve_spec("testbed:policy"), reward, out=directory, seeds=SEEDS, ns=ns,
                 problems=PROBLEMS, settings=settings, batch_size=8, reward_options=reward_options,
                 options={"nabla": DEMO_NABLA.replace(**changes), **options})
        driver.keep(directory, os.path.join(RECORDS, name))


def main(argv=None) -> None:
    driver.main(argv, __doc__.splitlines()[0], "experiments.study.run", "--runs", list(RUNS), "runs/study", run)


if __name__ == "__main__":
    main()
