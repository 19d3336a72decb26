"""The tuning split: every ∇-Reasoner setting the study freezes is chosen here, and never on the report split.

    python -m experiments.study.tuning [--out runs/tuning] [--cells a,b]   # resumable; about 40 min on 2 cores
    python -m experiments.study.make_report                               # tables, from the committed records

Tuning split: testbed test problems 0:200, seeds 0-2, the likelihood verifier (the reward that ranks best),
rollouts as the study's. Each cell changes one setting of the base (the demo's settings at learning rate 0.3) and
runs ``nabla@8``; the base also runs blind resampling and a best-of-N pool of 32 (for wBoN's temperature). Cells
are the paper's knobs and the reviewers' questions: learning rate, λ (= reward_coeff / nll_coeff), what DTO
optimises, update positions, Gumbel-softmax, DTO iterations, the selection threshold, three ablations, and the
reward's quality. Wall times here are not comparable (cells run beside other work); the study times its methods.
"""

from __future__ import annotations

import os

from experiments.study import driver

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDS = os.path.join(HERE, "tuning_records")
PROBLEMS, SEEDS, NEW_TOKENS = "0:200", (0, 1, 2), 48
POOL = (1, 2, 4, 8, 16, 32)
VERIFIER = "likelihood:testbed:verifier"
BASE_LR = 0.3

# name -> (group, what changes from the base, reward, methods)
CELLS = {
    "base": ("base", {}, VERIFIER, "nabla@8,nabla_no_dto@8,bon,wbon"),
    "lr_0.01": ("learning rate", {"learning_rate": 0.01}, VERIFIER, "nabla@8"),
    "lr_0.03": ("learning rate", {"learning_rate": 0.03}, VERIFIER, "nabla@8"),
    "lr_0.1": ("learning rate", {"learning_rate": 0.1}, VERIFIER, "nabla@8"),
    "lr_1.0": ("learning rate", {"learning_rate": 1.0}, VERIFIER, "nabla@8"),
    "nll_0.1": ("lambda", {"nll_coeff": 0.1}, VERIFIER, "nabla@8"),
    "nll_0.01": ("lambda", {"nll_coeff": 0.01}, VERIFIER, "nabla@8"),
    "nll_0": ("lambda", {"nll_coeff": 0.0}, VERIFIER, "nabla@8"),
    "latents": ("embedder", {"embedder": "latents"}, VERIFIER, "nabla@8"),
    "latents_lr_0.01": ("embedder at the official lr", {"embedder": "latents", "learning_rate": 0.01}, VERIFIER,
                        "nabla@8"),
    "positions_all": ("positions and Gumbel", {"update_positions": "all"}, VERIFIER, "nabla@8"),
    "gumbel": ("positions and Gumbel", {"gumbel": True}, VERIFIER, "nabla@8"),
    "iters_5": ("iterations", {"max_iters": 5}, VERIFIER, "nabla@8"),
    "iters_50": ("iterations", {"max_iters": 50}, VERIFIER, "nabla@8"),
    "confidence_0.9": ("selection threshold", {"confidence_threshold": 0.9}, VERIFIER, "nabla@8"),
    "confidence_0.99": ("selection threshold", {"confidence_threshold": 0.99}, VERIFIER, "nabla@8"),
    "confidence_0.999": ("selection threshold", {"confidence_threshold": 0.999}, VERIFIER, "nabla@8"),
    "no_rejection": ("ablations", {"rejection_sampling": False}, VERIFIER, "nabla@8"),
    "no_selection": ("ablations", {"selection": False}, VERIFIER, "nabla@8"),
    "no_grad_caching": ("ablations", {"grad_caching": False}, VERIFIER, "nabla@8"),
    "self_likelihood": ("reward quality", {}, "likelihood:testbed:policy", "nabla@8,nabla_no_dto@8,bon@8"),
    "classifier": ("reward quality", {}, "testbed:reward", "nabla@8,nabla_no_dto@8,bon@8"),
    # each setting group's winner at once (tuning_report.chosen_changes, from the cells above)
    "combined": ("combined", None, VERIFIER, "nabla@8"),
}
# the groups whose best cell, where it beats the base, joins the combined cell
SETTING_GROUPS = ("learning rate", "lambda", "embedder", "positions and Gumbel", "iterations", "selection threshold")


def base_config():
    from nabla_jax.commands.demo import DEMO_NABLA

    return DEMO_NABLA.replace(learning_rate=BASE_LR)


def cell_changes(name: str, cells: dict | None = None) -> dict:
    """What cell ``name`` changes from the base (the combined cell's: chosen from the records of the others,
    ``cells`` as :func:`~experiments.study.tuning_report.load_cells` gives them, by default the committed ones)."""
    changes = CELLS[name][1]
    if changes is None:
        from experiments.study.tuning_report import chosen_changes, load_cells

        changes = chosen_changes(load_cells(RECORDS) if cells is None else cells)
    return changes


def run(out: str, names) -> None:
    from nabla_jax.bundled import resolve_spec
    from nabla_jax.evaluation.context import DecodeSettings
    from nabla_jax.evaluation.runner import run_eval

    settings = DecodeSettings.of(base_config().replace(max_new_tokens=NEW_TOKENS))
    for name in names:
        _, _, reward, methods = CELLS[name]
        changes = cell_changes(name)
        directory = os.path.join(out, name)
        run_eval("testbed", methods, resolve_spec("testbed:policy"), reward, out=directory, seeds=SEEDS, ns=POOL,
                 problems=PROBLEMS, settings=settings, batch_size=8,
                 options={"nabla": base_config().replace(**changes)})
        driver.keep(directory, os.path.join(RECORDS, name))


def main(argv=None) -> None:
    driver.main(argv, __doc__.splitlines()[0], "experiments.study.tuning", "--cells", list(CELLS), "runs/tuning", run)


if __name__ == "__main__":
    main()
