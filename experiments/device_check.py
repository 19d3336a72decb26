"""One prepared check for an accelerator: bf16 parity, tokens/s, DTO step MFU, ∇-Reasoner problems/s, peak memory
against `nabla-jax plan`, and compile times, printed as one markdown table and written as JSON.

It runs with whatever JAX the machine has (no pinned install), from the repository root:

    python -m experiments.device_check [--json PATH] [--peak-tflops T] [--small]

Every model has random weights at a published shape (built on the device; nothing is downloaded). Each part has its
own time budget and catches its own errors: a part that runs out of time records "skipped (budget)" for the cases
it did not start, and one that fails records the error, so the others still run. The JSON is rewritten after each
part, so a run stopped from outside keeps what it measured. ``--small`` runs every part at toy sizes (on a CPU in
under a minute); the test suite runs it. The parts' workloads are in ``experiments/device_parts.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import traceback

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from experiments import device_parts as parts  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Sizes:
    parity_policy: str
    parity_reward: str
    parity_tokens: tuple[int, int]  # (rows, tokens)
    gen_shape: str
    gen_batches: tuple[int, ...]
    gen_prompt: int
    gen_new_tokens: int
    dto_pairs: tuple[tuple[str, str], ...]  # (policy, reward); later pairs run only if the plan fits the device
    dto_prompt: int
    dto_ahead: int
    dto_repeats: int
    nabla_pair: tuple[str, str]
    nabla_batches: tuple[int, ...]  # increasing, so each run's peak memory is its own
    nabla_prompt: int
    nabla_new_tokens: int
    nabla_generations: int
    nabla_iters: int
    budgets: dict  # part -> seconds
    total_seconds: float


FULL = Sizes(
    parity_policy="qwen2.5-0.5b", parity_reward="qwen3-0.6b", parity_tokens=(2, 128),
    gen_shape="qwen2.5-1.5b", gen_batches=(1, 8, 64), gen_prompt=64, gen_new_tokens=128,
    dto_pairs=(("qwen2.5-1.5b", "qwen3-0.6b"), ("qwen2.5-7b", "qwen3-8b-reward")), dto_prompt=512, dto_ahead=256,
    dto_repeats=5,
    nabla_pair=("qwen2.5-1.5b", "qwen3-0.6b"), nabla_batches=(1, 16, 64), nabla_prompt=64, nabla_new_tokens=128,
    nabla_generations=4, nabla_iters=20,
    # guesses for one H200 (compilation dominates a case); the total leaves room for start-up within 8 minutes
    budgets={"nabla": 160, "parity": 60, "generation": 110, "dto": 100, "memory": 5, "compile": 5},
    total_seconds=455,
)
SMALL = Sizes(
    parity_policy="toy-qwen2", parity_reward="toy-qwen3", parity_tokens=(2, 16),
    gen_shape="toy-qwen2", gen_batches=(1, 8), gen_prompt=16, gen_new_tokens=8,
    dto_pairs=(("toy-qwen2", "toy-qwen3"),), dto_prompt=32, dto_ahead=16, dto_repeats=3,
    nabla_pair=("toy-qwen2", "toy-qwen3"), nabla_batches=(2,), nabla_prompt=16, nabla_new_tokens=8,
    nabla_generations=2, nabla_iters=3,
    # generous: toy sizes take about a minute in all; these only stop a CPU that is far slower or shared
    budgets={"nabla": 90, "parity": 60, "generation": 60, "dto": 60, "memory": 5, "compile": 5},
    total_seconds=300,
)
# run order: the ∇-Reasoner first, on a fresh device, in increasing batch, so its peak-memory readings are its own
RUN_ORDER = ("nabla", "parity", "generation", "dto", "memory", "compile")
SHOW_ORDER = ("parity", "generation", "dto", "nabla", "memory", "compile")
PART_FUNCTIONS = {"parity": parts.part_parity, "generation": parts.part_generation, "dto": parts.part_dto,
                  "nabla": parts.part_nabla, "memory": parts.part_memory, "compile": parts.part_compile}
# dense bfloat16 peaks from the vendors' spec sheets, matched on jax's device_kind (first match wins)
PEAK_BF16_TFLOPS = (("h100 pcie", 756.0), ("h100", 989.0), ("h200", 989.0), ("gh200", 989.0), ("h800", 989.0),
                    ("b200", 2250.0), ("a100", 312.0), ("l40s", 362.0), ("l4", 121.0), ("tpu v6", 918.0),
                    ("tpu v5 lite", 197.0), ("tpu v5e", 197.0), ("tpu v5", 459.0), ("tpu v4", 275.0))


@dataclasses.dataclass
class Budget:
    seconds: float
    start: float = dataclasses.field(default_factory=lambda: time.perf_counter())
    case_start: float | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def next_case(self) -> bool:
        """Whether one more case fits: the time left must cover the previous case's time (cases grow, so that is
        a lower bound on the next one's). A case that does not fit is skipped, and so is every case after it."""
        now = self.elapsed()
        last = 0.0 if self.case_start is None else now - self.case_start
        if now + last > self.seconds:
            return False
        self.case_start = now
        return True


def peak_tflops(device_kind: str) -> float | None:
    kind = device_kind.lower()
    return next((peak for name, peak in PEAK_BF16_TFLOPS if name in kind), None)


def version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# module -> distribution: what the parts import (torch and transformers only for the references; without gguf,
# parity loads through convert.hf instead of load_policy / load_reward)
NEEDED = {"jax": "jax", "flax": "flax", "optax": "optax", "orbax.checkpoint": "orbax-checkpoint", "numpy": "numpy",
          "safetensors": "safetensors", "transformers": "transformers", "torch": "torch"}


def missing_packages() -> list[str]:
    """Distributions the check needs that this Python cannot import (an offline box carries them as wheels)."""
    import importlib.util

    missing = []
    for module, package in NEEDED.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a missing parent package
            found = False
        if not found:
            missing.append(package)
    return missing


def environment(override_peak: float | None) -> dict:
    import jax

    device = jax.devices()[0]
    stats = parts.memory_stats()
    return {
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers")},
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "memory_limit_bytes": stats.get("bytes_limit") if stats else None,
        "peak_bf16_tflops": override_peak if override_peak else peak_tflops(device.device_kind),
        "missing_packages": missing_packages(),
    }


class Rows(list):
    """The rows of a running part; each addition calls ``saved()``, so a run stopped from outside keeps them."""

    def __init__(self, saved):
        super().__init__()
        self.saved = saved

    def append(self, item) -> None:
        super().append(item)
        self.saved()

    def extend(self, items) -> None:
        super().extend(items)
        self.saved()


def run_part(name: str, ctx, seconds: float, report: dict, save) -> None:
    """Run one part under its budget into ``report["parts"][name]``; its error is recorded, never raised."""
    budget, rows = Budget(seconds), Rows(save)
    result = report["parts"][name] = {"status": "running", "seconds": None, "budget_s": seconds, "rows": rows}
    status, error = "ok", None
    if seconds <= 0:
        status = "skipped"
        rows.append(parts.skipped(name, "whole part", "total budget spent"))
    else:
        try:
            PART_FUNCTIONS[name](ctx, budget, rows)
        except Exception as err:  # noqa: BLE001 - one failing part must not stop the others
            status, error = "error", f"{type(err).__name__}: {err}"
            traceback.print_exc()
            rows.append(parts.row(name, "error", "error", None, note=error[:300]))
    elapsed = budget.elapsed()
    result.update(status=status, error=error, seconds=elapsed)
    save()
    print(f"[device_check] {name}: {status} in {elapsed:.1f} s (budget {seconds:.0f} s)", file=sys.stderr, flush=True)


def fmt(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "fraction":
        return f"{100 * value:.1f}%"
    text = f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4g}"
    return f"{text} {unit}".strip()


def format_table(results: dict) -> str:
    lines = ["| part | case | metric | value | reference | ratio | note |", "|---|---|---|---:|---:|---:|---|"]
    for name in SHOW_ORDER:
        for r in results.get(name, {}).get("rows", []):
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            lines.append(f"| {name} | {r['case']} | {r['metric']} | {fmt(r['value'], r['unit'])} | "
                         f"{fmt(r['reference'], r['unit'])} | {ratio} | {r['note']} |")
    return "\n".join(lines)


def write_json(path: str, report: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, default=str)
    os.replace(tmp, path)


def default_json_path() -> str:
    out = os.environ.get("OUT")
    return os.path.join(out, "device_check.json") if out else "device_check.json"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="toy sizes (a CPU runs every part in under a minute)")
    parser.add_argument("--json", default=None, help="where to write the JSON (default: $OUT/device_check.json "
                        "if OUT is set, else ./device_check.json)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the chip's dense bf16 peak, TFLOP/s "
                        "(default: from a table by device kind; none on a CPU)")
    parser.add_argument("--total-seconds", type=float, default=None, help="stop starting parts after this long")
    parser.add_argument("--parts", default=",".join(RUN_ORDER), help="comma-separated parts to run")
    args = parser.parse_args(argv)
    sizes = SMALL if args.small else FULL
    if args.small and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        # toy sizes: compile faster (as the test suite does); LLVM's optimisation level changes no float semantics
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    path = args.json or default_json_path()
    env = environment(args.peak_tflops)
    print(f"[device_check] jax {env['versions']['jax']} on {env['backend']} ({env['device_kind']} x "
          f"{env['device_count']})", file=sys.stderr, flush=True)
    if env["missing_packages"]:
        print(f"[device_check] missing: {', '.join(env['missing_packages'])}; the parts that import them will "
              "record the error (carry wheels: pip download --no-deps -d wheels NAME==VERSION, versions in "
              "constraints.txt; then pip install --no-index --find-links wheels NAME)", file=sys.stderr, flush=True)
    ctx = parts.Context(sizes, env["peak_bf16_tflops"], env["memory_limit_bytes"])
    report = {"environment": env, "sizes": dataclasses.asdict(sizes), "small": args.small, "parts": {}}
    total = Budget(sizes.total_seconds if args.total_seconds is None else args.total_seconds)
    chosen = args.parts.split(",")
    unknown = [n for n in chosen if n not in RUN_ORDER]
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(RUN_ORDER)}")
    for name in (n for n in RUN_ORDER if n in chosen):
        seconds = min(sizes.budgets[name], total.seconds - total.elapsed())
        run_part(name, ctx, seconds, report, lambda: write_json(path, report))
    report["total_seconds"] = total.elapsed()
    write_json(path, report)
    print(format_table(report["parts"]))
    print(f"\njax {env['versions']['jax']}, {env['backend']}, {env['device_kind']}; peak bf16 "
          f"{env['peak_bf16_tflops'] or 'n/a'} TFLOP/s; total {report['total_seconds']:.0f} s; JSON: {path}")
    return report


if __name__ == "__main__":
    main()
