"""The methods table (experiments/methods/results/methods.md) is what its committed records give, byte for byte."""

import os

from experiments.methods import compare


def test_the_methods_table_regenerates_from_the_committed_records():
    with open(os.path.join(compare.RESULTS, "methods.md"), encoding="utf-8") as handle:
        assert compare.report() == handle.read()
