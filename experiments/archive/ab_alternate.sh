# Sourced by the ab_*.sh scripts: `alternate BASE_TREE NEW_TREE ROUNDS CODE` runs the Python CODE in each
# checkout (its own directory, its own process, its own nabla_jax and experiments first on the path: `python -c`
# puts the working directory there), alternating ROUNDS times, with this project's virtual environment.
python="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.venv/bin/python"

alternate() {
  local base="$1" new="$2" rounds="$3" code="$4" tree
  for _ in $(seq "$rounds"); do
    for tree in "$base" "$new"; do
      (cd "$tree" && "$python" -c "$code")
    done
  done
}
