#!/usr/bin/env bash
# Create .venv (or $NABLA_VENV) and install nabla-jax with its runtime dependencies, at the exact versions CI tests
# (constraints.txt; pyproject.toml declares the compatible ranges). The test dependencies come with scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${NABLA_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -c constraints.txt -e .
