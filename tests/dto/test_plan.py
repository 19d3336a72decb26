"""``nabla-jax plan``: per-device memory from jax.eval_shape, checked against exact parameter counts and against
the arithmetic written out by hand."""

import json

import pytest
from jax.sharding import PartitionSpec as P

from nabla_jax.cli import main as cli_main
from nabla_jax.configs import PUBLISHED, published_config
from nabla_jax.dto.config import DTOConfig
from nabla_jax.models.decoder import count_params, param_shapes
from nabla_jax.plan import device_elements, format_plan, memory_plan, parse_bytes

PUBLISHED_COUNTS = {"qwen2.5-7b-instruct": 7_615_616_512, "llama-3.1-8b-instruct": 8_030_261_248}
POLICIES = [n for n in sorted(PUBLISHED) if not n.startswith("skywork")]
REWARDS = [n for n in sorted(PUBLISHED) if n.startswith("skywork")]


def rows(plan):
    return {r.name: r for r in plan.rows}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("dtype, itemsize", [("bfloat16", 2), ("float32", 4)])
def test_params_on_one_device_are_the_exact_count_times_the_dtype_size(policy, dtype, itemsize):
    reward = REWARDS[0]
    plan = memory_plan(published_config(policy), published_config(reward), "data=1", 1, 16, dtype=dtype)
    for name, config in (("policy", policy), ("reward", reward)):
        count = count_params(param_shapes(published_config(config)))
        if config in PUBLISHED_COUNTS:
            assert count == PUBLISHED_COUNTS[config]
        row = rows(plan)[f"params: {name}"]
        assert row.device_bytes == row.global_bytes == count * itemsize


def test_qwen25_7b_on_fsdp8_by_hand():
    d, v, layers, kv, head_dim = 3584, 152064, 28, 4, 128
    B, L, A = 16, 1024, 512
    plan = memory_plan(published_config("qwen2.5-7b-instruct"), None, "fsdp=8", B, L, ahead=A, activations=False)
    got = rows(plan)
    # every weight matrix has a hidden (embed) dimension of 3584 = 8 * 448, split over fsdp; the q/k/v biases
    # (head axes, which map to tensor) and the RMSNorm scales are replicated
    total = 7_615_616_512
    replicated = layers * (d + 2 * kv * head_dim) + layers * 2 * d + d  # biases, two norms per layer, final norm
    assert got["params: policy"].device_bytes == ((total - replicated) // 8 + replicated) * 2
    assert got["params: policy"].global_bytes == total * 2
    # KV cache: 2 * layers * B * L * kv_heads * head_dim * bytes / shards; fsdp splits neither batch nor heads
    kv_bytes = 2 * layers * B * L * kv * head_dim * 2
    assert got["kv cache: policy"].device_bytes == got["kv cache: policy"].global_bytes == kv_bytes
    # DTO ("first" position, logits): variables [B, 1, V] + cached dL/dy [B, 1, V] float32, plus small counters;
    # Adam: two float32 moments of the variables plus step counters
    assert 2 * B * v * 4 <= got["dto variables"].device_bytes < 2 * B * v * 4 + B * 4096
    assert 2 * B * v * 4 <= got["adam state"].device_bytes < 2 * B * v * 4 + B * 64
    # on data=2,tensor=4 the batch halves and the 4 kv heads split over tensor=4
    split = rows(memory_plan(published_config("qwen2.5-7b-instruct"), None, "data=2,tensor=4", B, L, ahead=A))
    assert split["kv cache: policy"].device_bytes == kv_bytes // (2 * 4)
    assert split["dto variables"].device_bytes == got["dto variables"].device_bytes // 2
    assert plan.total_device_bytes == sum(r.device_bytes for r in plan.rows)
    assert plan.fits and plan.device_memory == 80 * 2**30


def test_all_positions_and_latents_sizes():
    cfg = published_config("qwen2.5-7b-instruct")
    B, A = 2, 1024
    every = rows(memory_plan(cfg, None, "data=1", B, 2048, ahead=A, dto=DTOConfig(update_positions="all")))
    latents = rows(memory_plan(cfg, None, "data=1", B, 2048, ahead=A,
                               dto=DTOConfig(update_positions="all", embedder="latents", grad_caching=False)))
    v, d = cfg.vocab_size, cfg.hidden_size
    assert 2 * B * A * v * 4 <= every["adam state"].device_bytes < 2 * B * A * v * 4 + B * 64
    assert 2 * B * A * d * 4 <= latents["adam state"].device_bytes < 2 * B * A * d * 4 + B * 64
    # + the argmax token ids [B, A] int32, two loss traces [B, max_iters] and scalars
    assert B * A * d * 4 + B * A * 4 <= latents["dto variables"].device_bytes < B * A * d * 4 + B * (A * 4 + 1024)


def test_ceil_division_per_sharded_dimension():
    sizes = {"data": 2, "fsdp": 4, "tensor": 3}
    assert device_elements((10, 7), P("fsdp", "tensor"), sizes) == 3 * 3
    assert device_elements((10, 7, 5), P(("data", "fsdp")), sizes) == 2 * 7 * 5
    assert device_elements((10,), P(), sizes) == 10
    with pytest.raises(ValueError, match="not in the mesh"):
        device_elements((10,), P("pipeline"), sizes)


def test_byte_sizes_and_the_fit_verdict():
    assert parse_bytes("80GiB") == 80 * 2**30
    assert parse_bytes("141 GB") == 141 * 10**9
    assert parse_bytes("1.5gib") == 3 * 2**29 and parse_bytes("4096") == 4096
    with pytest.raises(ValueError, match="bad memory size"):
        parse_bytes("80 gigs")
    cfg = published_config("llama-3.1-8b-instruct")
    small = memory_plan(cfg, None, "data=1", 1, 128, device_memory="1GiB")
    assert not small.fits and "does NOT fit in 1.00 GiB" in format_plan(small)


@pytest.mark.parametrize("mesh, message", [
    ("data=2,pipeline=4", "unknown mesh axis 'pipeline'"),
    ("data2", "bad mesh entry 'data2'"),
    ("data=0", "sizes are integers >= 1"),
    ("data=-1,tensor=2", "every axis size explicit"),
])
def test_bad_mesh_strings_are_clear_errors(mesh, message, capsys):
    with pytest.raises(ValueError, match=message):
        memory_plan(published_config("qwen2.5-7b-instruct"), None, mesh, 1, 16)
    assert cli_main(["plan", "--policy", "qwen2.5-7b-instruct", "--mesh", mesh, "--batch", "1", "--max-len", "16"]) == 2
    assert message.split("'")[0] in capsys.readouterr().err


def test_cli_table_and_json(capsys):
    args = ["plan", "--policy", "qwen2.5-7b-instruct", "--reward", "skywork-reward-v2-qwen3-4b",
            "--mesh", "data=2,fsdp=2,tensor=2", "--batch", "8", "--max-len", "1024", "--device-memory", "80GiB"]
    assert cli_main(args) == 0
    table = capsys.readouterr().out
    for item in ("params: policy", "params: reward", "kv cache: policy", "kv cache: reward", "dto variables",
                 "adam state", "activations", "**total**", "fits in 80.00 GiB"):
        assert item in table
    assert cli_main([*args, "--json", "--dtype", "float32"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["devices"] == 8 and plan["fits"] is True and plan["settings"]["dtype"] == "float32"
    assert plan["total_device_bytes"] == sum(r["device_bytes"] for r in plan["rows"])
    policy = next(r for r in plan["rows"] if r["name"] == "params: policy")
    assert policy["global_bytes"] == 7_615_616_512 * 4
    assert cli_main(["plan", "--policy", "no-such-model", "--mesh", "data=1", "--batch", "1", "--max-len", "8"]) == 2
    assert "unknown config 'no-such-model'" in capsys.readouterr().err
