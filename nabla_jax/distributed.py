"""Multi-process runs through ``jax.distributed``: start-up, the process index/count, and barriers.

A run is multi-process when the command line says so (``--coordinator``/``--num-processes``/``--process-id``, or
``--distributed`` to let JAX detect a TPU pod, Slurm or Open MPI job), or when the environment of such a launch is
set (``JAX_COORDINATOR_ADDRESS``, a Slurm job step with more than one task, an Open MPI launch). Otherwise nothing
is initialised and the run is the usual single process. ``jax.distributed.initialize`` must run before any JAX
computation, so commands call :func:`initialize` first.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place in the run: ``index`` in ``[0, count)``; process 0 writes the shared outputs."""

    index: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def barrier(self, name: str) -> None:
        """Wait until every process reaches the barrier ``name`` (a JAX collective; a no-op for one process)."""
        if self.count > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)


def launched_by_cluster(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment is that of a multi-process launch JAX can read its settings from."""
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if "SLURM_STEP_ID" in environ and int(environ.get("SLURM_STEP_NUM_TASKS", environ.get("SLURM_NTASKS", "1"))) > 1:
        return True
    return int(environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1


def parse_coordinator(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:1234), got {address!r}")
    return address


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> Processes:
    """Join the run's processes with ``jax.distributed.initialize`` when asked to (flags, ``auto`` or a cluster
    launch in ``environ``); a single process otherwise. Settings left None are detected by JAX."""
    explicit = coordinator is not None or num_processes is not None or process_id is not None
    if not (explicit or auto or launched_by_cluster(environ)):
        return Processes()
    if coordinator is not None:
        parse_coordinator(coordinator)
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num-processes must be >= 1, got {num_processes}")
    if process_id is not None and not 0 <= process_id < (num_processes or process_id + 1):
        raise ValueError(f"--process-id must be in [0, {num_processes}), got {process_id}")
    if explicit and not auto and None in (coordinator, num_processes, process_id) \
            and not launched_by_cluster(environ):
        raise ValueError("a multi-process run needs --coordinator, --num-processes and --process-id together "
                         "(or --distributed on a TPU pod, Slurm or Open MPI launch)")
    import jax

    jax.distributed.initialize(coordinator, num_processes, process_id)
    return Processes(jax.process_index(), jax.process_count())
