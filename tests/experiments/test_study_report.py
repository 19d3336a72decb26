"""The study's report command regenerates its tables from committed records: on the committed slice its output is
the committed expected file, and on the full records it is the committed study.md."""

import os

import pytest

from experiments.study import make_report

STUDY = os.path.dirname(make_report.__file__)


def test_the_report_on_the_committed_slice_is_the_expected_file(tmp_path):
    text = make_report.make_report(os.path.join(STUDY, "slice"), str(tmp_path))
    with open(os.path.join(STUDY, "slice", "expected.md"), encoding="utf-8") as handle:
        assert text == handle.read()
    assert (tmp_path / "accuracy_vs_flops.png").stat().st_size > 0
    assert (tmp_path / "accuracy_vs_wall.png").stat().st_size > 0


@pytest.mark.slow
def test_the_committed_study_report_is_what_the_committed_records_give(tmp_path):
    text = make_report.make_report(os.path.join(STUDY, "records"), str(tmp_path))
    with open(os.path.join(STUDY, "results", "study.md"), encoding="utf-8") as handle:
        assert text == handle.read()
