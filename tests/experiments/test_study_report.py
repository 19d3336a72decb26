"""The study's report command regenerates its tables from committed records: on the committed slice its output is
the committed expected file, and on the full records it is the committed study.md."""

import os

import pytest

from experiments.study import make_report

STUDY = os.path.dirname(make_report.__file__)


def test_the_report_on_the_committed_slice_is_the_expected_file(tmp_path):
    slice_dir = os.path.join(STUDY, "slice")
    text = make_report.make_report(slice_dir, str(tmp_path), os.path.join(slice_dir, "tuning"))
    with open(os.path.join(slice_dir, "expected.md"), encoding="utf-8") as handle:
        assert text == handle.read()
    with open(os.path.join(slice_dir, "expected_tuning.md"), encoding="utf-8") as handle:
        assert (tmp_path / "tuning.md").read_text(encoding="utf-8") == handle.read()
    assert (tmp_path / "accuracy_vs_flops.png").stat().st_size > 0
    assert (tmp_path / "accuracy_vs_wall.png").stat().st_size > 0


@pytest.mark.slow
def test_the_committed_study_report_is_what_the_committed_records_give(tmp_path):
    text = make_report.make_report(os.path.join(STUDY, "records"), str(tmp_path), os.path.join(STUDY, "tuning_records"))
    with open(os.path.join(STUDY, "results", "study.md"), encoding="utf-8") as handle:
        assert text == handle.read()
    with open(os.path.join(STUDY, "results", "tuning.md"), encoding="utf-8") as handle:
        assert (tmp_path / "tuning.md").read_text(encoding="utf-8") == handle.read()


def test_wbon_recomputed_from_a_recorded_pool_is_the_recorded_wbon():
    """The tuning report re-chooses wBoN at other temperatures from the recorded pool; at the temperature the run
    used it must give the run's own wbon@N records."""
    from experiments.study.tuning_report import wbon_hits
    from nabla_jax.evaluation.records import load_directory

    records = load_directory(os.path.join(STUDY, "slice", "tuning", "base"))[1]
    pool = [r for r in records if r["method"] == "bon@32"]
    assert len(pool) == 16
    changed = 0
    for n in (4, 8, 16, 32):
        recorded = {(r["problem_id"], r["seed"]): bool(r["correct"]) for r in records if r["method"] == f"wbon@{n}"}
        assert [recorded[(r["problem_id"], r["seed"])] for r in pool] == wbon_hits(pool, 1.0, n)
        changed += wbon_hits(pool, 1.0, n) != wbon_hits(pool, 0.01, n)
    assert changed  # the temperature matters on this slice


def test_the_study_ran_the_settings_the_tuning_split_chose():
    """The report split's tuned runs carry, in their fingerprints, exactly the choices the tuning report makes from
    the committed tuning records: the ∇-Reasoner's settings and wBoN's temperature."""
    import json

    from experiments.study import tuning, tuning_report
    from nabla_jax.evaluation.nabla_methods import SET_BY_EVAL

    def fingerprint(name):
        with open(os.path.join(STUDY, "records", name, "fingerprint.json"), encoding="utf-8") as handle:
            return json.load(handle)["methods"]

    cells = tuning_report.load_cells(tuning.RECORDS)
    tuned = tuning.base_config().replace(**tuning_report.tuned_changes(cells))
    expected = {k: v for k, v in tuned.changed_settings().items() if k not in SET_BY_EVAL}
    assert fingerprint("likelihood_tuned")["nabla@8"]["nabla"] == expected
    assert "learning_rate" in expected  # the tuning base's own change is carried, not only the cell's
    temperatures = {m["wbon_temperature"] for m in fingerprint("likelihood_wbon").values()}
    assert temperatures == {tuning_report.wbon_temperature(cells)}
