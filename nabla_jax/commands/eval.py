"""``nabla-jax eval``: run decoding methods on a benchmark, one resumable JSONL record per (method, problem, seed)."""

from __future__ import annotations

from nabla_jax.bundled import POLICY_HELP
from nabla_jax.commands.parsing import add_allow_nonfinite, finite_float, int_list, seed_list
from nabla_jax.commands.reward_args import REWARD_HELP, add_reward_arguments, reward_options
from nabla_jax.evaluation.options import OPTIONS, check_option
from nabla_jax.presets import PRESETS
from nabla_jax.reasoner.config import setting_default

INSTRUCTIONS = {
    "none": None,
    "boxed": "Please reason step by step, and put your final answer within \\boxed{}.",
}


def register(subparsers) -> None:
    from nabla_jax.evaluation.datasets import BENCHMARKS
    from nabla_jax.evaluation.registry import METHODS

    methods = ", ".join(f"{name} ({spec.description})" for name, spec in METHODS.items())
    parser = subparsers.add_parser(
        "eval",
        help="evaluate decoding methods on a benchmark (resumable JSONL records)",
        description="Evaluate methods on a benchmark. Each problem is the only user message of the policy's chat "
        "template. Records are appended to OUT/records.jsonl as they finish; rerunning the same command resumes, and "
        "a changed configuration is refused. Methods: " + methods + ". A method takes budgets from --n or as "
        "name@N (e.g. bon@4).",
    )
    parser.add_argument("--benchmark", required=True, help=f"{', '.join(BENCHMARKS)} or a path to a .jsonl file")
    parser.add_argument("--method", required=True, help="comma-separated, e.g. greedy,sc,bon,wbon or bon@16")
    parser.add_argument("--policy", required=True, help=POLICY_HELP)
    parser.add_argument("--reward", default=None, help=REWARD_HELP + " (needed by bon, wbon and the ∇-Reasoner)")
    parser.add_argument("--out", required=True, help="results directory")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--n", default="8", help="comma-separated candidate counts / budgets (default 8)")
    parser.add_argument("--limit", type=int, default=None, help="only the first LIMIT problems of the file")
    parser.add_argument("--problems", default=None, metavar="A:B",
                        help="only problems A to B-1 of the file (0-based; A: runs to the end); e.g. the testbed's "
                        "tuning split 0:200 and report split 200:500")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="an official script's settings (max new tokens, sampling, --nabla-*); flags override it")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help=f"default: the preset's, else {setting_default('max_new_tokens')}")
    parser.add_argument("--temperature", type=finite_float, default=None,
                        help=f"default: the preset's, else {setting_default('rollout_temperature')}")
    parser.add_argument("--top-k", type=int, default=None, help="default: the preset's, else the policy's "
                        f"generation_config.json, else {setting_default('rollout_top_k')}")
    parser.add_argument("--top-p", type=finite_float, default=None,
                        help=f"default: the preset's, else {setting_default('rollout_top_p')}")
    parser.add_argument("--repetition-penalty", type=finite_float, default=None,
                        help="rollouts of every method (vLLM semantics, 1 = off); default: the policy's "
                        "generation_config.json, else 1")
    parser.add_argument("--system", default=None, help="system message (default: none, as the paper)")
    parser.add_argument("--instruction", default="none",
                        help="text appended to each problem after a blank line, or a preset: "
                        + ", ".join(INSTRUCTIONS) + " (default none, as the paper)")
    for option in OPTIONS.values():
        kind = int if option.integer else finite_float
        parser.add_argument(f"--{option.name.replace('_', '-')}", type=kind, default=option.default,
                            help=f"{option.help} (default {option.default})")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="default: the stored dtype")
    add_allow_nonfinite(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="problems per batch (default 8)")
    parser.add_argument("--max-rows", type=int, default=64, help="most sequences per jitted call (default 64)")
    parser.add_argument("--keep-texts", action="store_true",
                        help="store every candidate's text and token ids (default: only the chosen text)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--mesh", default=None, help="shard the models over this process's devices, e.g. "
                        "data=2,fsdp=2,tensor=2 (axes data, fsdp, tensor; missing ones 1); default: problems over all "
                        "local devices, params replicated")
    add_distributed_arguments(parser)
    add_nabla_arguments(parser)
    add_reward_arguments(parser)
    parser.set_defaults(func=run)


def add_distributed_arguments(parser) -> None:
    group = parser.add_argument_group(
        "multi-process runs (jax.distributed)",
        "Start the same command once per process (host). Each evaluates every N-th batch into "
        "OUT/records.process-I.jsonl; process 0 then merges them into OUT/records.jsonl, in the order one process "
        "writes. OUT must be on a filesystem every process sees. Without these flags a run is multi-process only "
        "when launched as one (JAX_COORDINATOR_ADDRESS set, a multi-task Slurm step, an Open MPI launch).",
    )
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="process 0's address")
    group.add_argument("--num-processes", type=int, default=None, metavar="N")
    group.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, in [0, N)")
    group.add_argument("--distributed", action="store_true",
                       help="initialise jax.distributed with whatever JAX detects (TPU pod, Slurm, Open MPI)")


def add_nabla_arguments(parser) -> None:
    """``--nabla-<setting>`` for every NablaConfig setting the evaluation does not set itself (official flat names,
    dashes for underscores)."""
    import argparse

    from nabla_jax.commands.run import config_option_type
    from nabla_jax.evaluation.nabla_methods import SET_BY_EVAL
    from nabla_jax.reasoner.config import setting_default, setting_names

    group = parser.add_argument_group("∇-Reasoner settings for the nabla methods (defaults: the official MATH-500 script)")
    for name in setting_names():
        if name in SET_BY_EVAL:
            continue
        group.add_argument(f"--nabla-{name.replace('_', '-')}", dest=f"nabla_{name}", type=config_option_type(name),
                           default=argparse.SUPPRESS, help=f"default {setting_default(name)}")


# the decoding flags and the setting each one gives
DECODE_FLAGS = {"max_new_tokens": "max_new_tokens", "temperature": "rollout_temperature", "top_k": "rollout_top_k",
                "top_p": "rollout_top_p", "repetition_penalty": "rollout_repetition_penalty"}


def eval_config(args):
    """The run's NablaConfig: the preset (else the defaults of the official MATH-500 script), then the policy's
    generation_config.json for the rollouts' top-k and repetition penalty where neither the preset's script nor a
    flag sets them (as the official runs), then the flags."""
    import os

    from nabla_jax.bundled import resolve_spec
    from nabla_jax.models.generation_config import read_generation_config
    from nabla_jax.presets import preset, script_settings
    from nabla_jax.reasoner.config import NablaConfig

    config = preset(args.preset) if args.preset else NablaConfig()
    script = script_settings(args.preset) if args.preset else {}
    policy_dir = resolve_spec(args.policy)
    generation = read_generation_config(policy_dir if os.path.isdir(policy_dir) else None)
    changes = {}
    if generation.top_k is not None and "rollout_top_k" not in script:
        changes["rollout_top_k"] = generation.top_k
    changes["rollout_repetition_penalty"] = generation.repetition_penalty or 1.0
    changes.update({setting: getattr(args, flag) for flag, setting in DECODE_FLAGS.items()
                    if getattr(args, flag) is not None})
    if changes.get("max_new_tokens", 1) < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {changes['max_new_tokens']}")
    changes.update(nabla_options(args))
    return config.replace(**changes)


def nabla_options(args) -> dict:
    from nabla_jax.reasoner.config import setting_names

    return {name: getattr(args, f"nabla_{name}") for name in setting_names() if hasattr(args, f"nabla_{name}")}


def run(args) -> int:
    from nabla_jax.distributed import initialize
    from nabla_jax.evaluation.runner import run_eval

    seeds = seed_list(args.seeds)
    instruction = INSTRUCTIONS.get(args.instruction, args.instruction)
    from nabla_jax.evaluation.context import DecodeSettings

    config = eval_config(args)  # bad settings fail here, naming the setting
    settings = DecodeSettings.of(config, args.system, instruction)
    chosen = {name: check_option(name, getattr(args, name), "--" + name.replace("_", "-")) for name in OPTIONS}
    ns = int_list(args.n, "--n")
    if min(ns) < 1:
        raise ValueError(f"--n values must be >= 1, got {args.n}")
    options = {**chosen, "nabla": config}
    processes = initialize(args.coordinator, args.num_processes, args.process_id, auto=args.distributed)
    mesh = None
    if args.mesh:
        import jax

        from nabla_jax.sharding import make_mesh

        mesh = make_mesh(args.mesh, jax.local_devices())  # each process evaluates its own batches on its devices
    written = run_eval(
        args.benchmark,
        args.method,
        args.policy,
        args.reward,
        out=args.out,
        seeds=seeds,
        ns=ns,
        limit=args.limit,
        problems=args.problems,
        settings=settings,
        dtype=args.dtype,
        batch_size=args.batch_size,
        max_rows=args.max_rows,
        options=options,
        progress=not args.no_progress,
        keep_texts=args.keep_texts,
        processes=processes,
        mesh=mesh,
        reward_options=reward_options(args),
        allow_nonfinite=args.allow_nonfinite,
    )
    if not processes.is_main:
        print(f"process {processes.index} of {processes.count}: wrote {written} records (merged by process 0)")
        return 0
    print(f"wrote {written} records to {args.out}; summarise with: nabla-jax report {args.out}")
    return 0
