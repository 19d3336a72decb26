"""Whole programs kept serialised beside the compilation cache (nabla_jax.program_cache): a later process reads a
kept program instead of tracing it, and gets the same results; anything that could change the program (static
settings, shapes, source) keys it anew; a damaged file is traced again; off, the function is called directly."""

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nabla_jax import program_cache


class Pair(NamedTuple):
    total: jax.Array
    scaled: jax.Array


program_cache.register_results(Pair)
TRACES = []


def toy(x, y, scale=1.0):
    TRACES.append(scale)  # runs only while tracing
    return Pair(jnp.sum(x) + y["b"], x * scale)


@pytest.fixture
def kept(tmp_path):
    program_cache.enable(str(tmp_path))
    program_cache._loaded.clear()
    TRACES.clear()
    yield tmp_path
    program_cache.enable(None)
    program_cache._loaded.clear()


def _new_process():
    """What a later process has: the files, none of this process's loaded programs."""
    program_cache._loaded.clear()


def test_a_later_process_reads_the_program_instead_of_tracing(kept):
    x, y = jnp.arange(4.0), {"b": jnp.float32(2.0)}
    first = program_cache.call(toy, {"scale": 3.0}, x=x, y=y)
    assert TRACES == [3.0] and len(os.listdir(kept)) == 1
    assert float(program_cache.call(toy, {"scale": 3.0}, x=x + 1, y=y).total) == 10.0 + 2  # same process
    assert TRACES == [3.0]
    _new_process()
    again = program_cache.call(toy, {"scale": 3.0}, x=x, y=y)
    assert TRACES == [3.0]  # read, not traced
    assert isinstance(again, Pair)
    np.testing.assert_array_equal(again.scaled, first.scaled)
    assert float(again.total) == float(first.total) == 8.0
    direct = toy(x, y, scale=3.0)
    np.testing.assert_array_equal(direct.scaled, first.scaled)


def test_settings_shapes_and_source_key_the_program(kept, monkeypatch):
    x, y = jnp.arange(4.0), {"b": jnp.float32(2.0)}
    program_cache.call(toy, {"scale": 3.0}, x=x, y=y)
    program_cache.call(toy, {"scale": 2.0}, x=x, y=y)  # another static setting
    program_cache.call(toy, {"scale": 2.0}, x=jnp.arange(5.0), y=y)  # another shape
    program_cache.call(toy, {"scale": 2.0}, x=x.astype(jnp.int32), y=y)  # another dtype
    assert TRACES == [3.0, 2.0, 2.0, 2.0] and len(os.listdir(kept)) == 4
    _new_process()
    monkeypatch.setattr(program_cache, "_source_digest", "edited source")
    program_cache.call(toy, {"scale": 3.0}, x=x, y=y)
    assert len(TRACES) == 5 and len(os.listdir(kept)) == 5


def test_a_damaged_file_is_traced_again_and_rewritten(kept):
    x, y = jnp.arange(4.0), {"b": jnp.float32(2.0)}
    program_cache.call(toy, {"scale": 3.0}, x=x, y=y)
    (path,) = [os.path.join(kept, name) for name in os.listdir(kept)]
    with open(path, "r+b") as handle:
        handle.truncate(100)
    _new_process()
    result = program_cache.call(toy, {"scale": 3.0}, x=x, y=y)
    assert TRACES == [3.0, 3.0] and float(result.total) == 8.0
    assert os.path.getsize(path) > 100 and not [n for n in os.listdir(kept) if n.endswith(".tmp")]
    _new_process()
    program_cache.call(toy, {"scale": 3.0}, x=x, y=y)
    assert len(TRACES) == 2  # the rewritten file reads back


def test_off_the_function_is_called_directly(tmp_path):
    program_cache.enable(None)
    TRACES.clear()
    result = program_cache.call(toy, {"scale": 3.0}, x=jnp.arange(4.0), y={"b": jnp.float32(2.0)})
    assert TRACES == [3.0] and float(result.total) == 8.0 and not os.listdir(tmp_path)


def test_an_unexportable_function_runs_directly_with_a_warning(kept):
    def with_callback(x):
        jax.debug.callback(lambda v: None, x)  # host callbacks cannot be serialised
        return x + 1

    with pytest.warns(UserWarning, match="not kept in the program cache"):
        assert float(program_cache.call(with_callback, {}, x=jnp.float32(1.0))) == 2.0
    assert not os.listdir(kept)
    assert float(program_cache.call(with_callback, {}, x=jnp.float32(2.0))) == 3.0  # no second warning


def test_the_compile_cache_switch_turns_programs_on_beside_it(monkeypatch):
    from nabla_jax import compile_cache

    before = program_cache.directory()
    try:
        program_cache.enable(None)
        monkeypatch.setenv(compile_cache.DISABLE_ENV, "1")
        assert compile_cache.enable() is None and program_cache.directory() is None
        monkeypatch.delenv(compile_cache.DISABLE_ENV)
        if not jax.config.jax_compilation_cache_dir:
            pytest.skip("this session has no compilation cache folder to keep programs beside")
        folder = compile_cache.enable()  # the session's folder, kept as it is
        assert folder == jax.config.jax_compilation_cache_dir
        assert program_cache.directory() == os.path.join(folder, program_cache.FOLDER)
    finally:
        program_cache.enable(before)


def test_the_searches_are_kept_and_read_back_with_the_same_results(kept):
    """The step search and reward-guided decoding return their states through kept programs: every NamedTuple in
    them is registered (an unregistered one would warn and trace each process), and a read program answers as the
    traced one did."""
    import warnings

    import nabla_jax
    from nabla_jax.generation import SamplingConfig
    from nabla_jax.search import GuidedConfig, RewardGuidedDecoder, SearchConfig, StepSearch

    policy = nabla_jax.load_policy("testbed:policy")
    prompts = ["what is 12+30-7?", "what is 5+9+11?"]
    search = StepSearch(policy, nabla_jax.load_reward("testbed:prm"),
                        SearchConfig("beam", 2, 2, 1.0, 8, SamplingConfig(0.8, 20, 0.95)))
    guided = RewardGuidedDecoder(policy, nabla_jax.load_reward("testbed:outcome"), GuidedConfig(2, 1.0, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a program that could not be kept fails the test
        first = [decoder.generate(prompts, seed=1) for decoder in (search, guided)]
    assert len(os.listdir(kept)) == 2
    _new_process()
    again = [decoder.generate(prompts, seed=1) for decoder in (search, guided)]
    assert len(os.listdir(kept)) == 2
    def answers(results):
        return [(r.token_ids, r.score, {k: v for k, v in r.stats.items() if k != "wall_time_s"}) for r in results]

    for before, after in zip(first, again):
        assert answers(before) == answers(after)


def test_an_unhashable_setting_still_keys_the_program(kept):
    x, y = jnp.arange(4.0), {"b": jnp.float32(2.0)}

    def listed(x, y, scales):
        TRACES.append(tuple(scales))
        return Pair(jnp.sum(x) + y["b"], x * scales[0])

    assert float(program_cache.call(listed, {"scales": [2.0]}, x=x, y=y).scaled[1]) == 2.0
    assert float(program_cache.call(listed, {"scales": [3.0]}, x=x, y=y).scaled[1]) == 3.0
    _new_process()
    assert float(program_cache.call(listed, {"scales": [3.0]}, x=x, y=y).scaled[1]) == 3.0
    assert TRACES == [(2.0,), (3.0,)] and len(os.listdir(kept)) == 2


def test_jax_settings_that_change_tracing_key_the_program(kept):
    x, y = jnp.arange(4.0), {"b": jnp.float32(2.0)}
    program_cache.call(toy, {"scale": 3.0}, x=x, y=y)
    with jax.default_matmul_precision("highest"):
        program_cache.call(toy, {"scale": 3.0}, x=x, y=y)
    assert TRACES == [3.0, 3.0] and len(os.listdir(kept)) == 2


def test_a_function_that_fails_raises_its_own_error_without_a_warning(kept):
    def broken(x):
        raise ValueError("the function's own complaint")

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="own complaint"):
            program_cache.call(broken, {}, x=jnp.float32(1.0))
    assert not os.listdir(kept)
