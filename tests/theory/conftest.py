"""Theory checks run in float64, and their small programs compile with XLA's quick pipeline. Both switches are
context managers around each test, so neither leaks into other test modules (``jax.enable_x64`` is thread-local
configuration restored on exit; ``quick_compilation`` affects only ``experiments.theory``'s own functions)."""

import jax
import pytest

from experiments.theory.compilation import quick_compilation


@pytest.fixture(autouse=True)
def float64_quick_compilation():
    with jax.enable_x64(True), quick_compilation():
        yield
