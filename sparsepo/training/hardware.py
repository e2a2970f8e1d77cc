"""How a run uses its hardware: CPU cores granted per worker and used as threads, and bf16 autocast.

A CPU worker computes with as many torch intra-op threads as the cores Ray granted it, and by default a run
on a CPU machine is granted all of them (split evenly between its workers; sweeps split them between
concurrent trials first). Ray starts workers niced (``worker_niceness``, 15) so that its own daemons stay
responsive; a training worker that shares the machine with other work would then get a fraction of its
cores, so the worker asks for normal priority back where the OS allows it.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import AbstractContextManager

import torch

log = logging.getLogger("sparsepo.training.hardware")


def machine_cpus() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def cluster_cpus() -> tuple[float, float]:
    """``(total CPUs, CPUs of the largest node)`` of the Ray cluster this driver is connected to.

    Not yet connected: connects first when ``RAY_ADDRESS`` names a cluster (``fit()`` would connect there anyway),
    otherwise this machine's cores for both (what a local ``ray.init()`` would register).
    """
    import ray

    if not ray.is_initialized() and os.environ.get("RAY_ADDRESS", "local") not in ("", "local"):
        ray.init()
    if not ray.is_initialized():
        n = float(machine_cpus())
        return n, n
    nodes = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    return float(sum(nodes)), float(max(nodes, default=0.0))


def default_cpus_per_worker(num_workers: int, total: float | None = None, largest_node: float | None = None) -> float:
    """All the cluster's CPUs split evenly between ``num_workers`` workers, at most one node's worth each (0 workers,
    local mode, is one process: all of them).

    Rounded down to 0.01 so that ``num_workers`` x the result never exceeds what Ray holds.
    """
    if total is None or largest_node is None:
        total, largest_node = cluster_cpus()
    share = min(total / max(num_workers, 1), largest_node)
    return max(0.01, math.floor(share * 100 + 1e-6) / 100)


def split_cpus(total: float, concurrent: int, num_workers: int, driver_cpus: float) -> float:
    """CPUs per Train worker when ``concurrent`` trials, each a driver plus ``num_workers`` workers, share ``total``
    (0 workers, local mode: the trial's one training process)."""
    per_trial = total / max(concurrent, 1) - driver_cpus
    return max(0.01, math.floor(per_trial / max(num_workers, 1) * 100 + 1e-6) / 100)


def threads_for(cpus: float) -> int:
    """Intra-op threads for a grant of ``cpus`` cores: whole cores (0.99 counts as one), at least one."""
    return max(1, math.floor(cpus + 0.05))


def granted_cpus() -> float | None:
    """The CPUs Ray granted this process (a Train worker, a trial's actor); None outside Ray or without a grant."""
    import ray

    return ray.get_runtime_context().get_assigned_resources().get("CPU") if ray.is_initialized() else None


def use_cpus(cpus: float | None) -> int:
    """Set torch's intra-op threads for a grant of ``cpus`` cores (at most the machine's; None or 0: left as they
    are) and undo Ray's niceness. Returns the thread count."""
    if cpus:
        # A Ray node may declare more CPUs than it has cores (ray.init(num_cpus=...)): never oversubscribe them.
        torch.set_num_threads(min(threads_for(cpus), machine_cpus()))
    renice_to_normal()
    return torch.get_num_threads()


def use_granted_cpus() -> int:
    """In a Ray worker: :func:`use_cpus` of the CPUs Ray granted it. Outside Ray (or for a worker granted no
    CPU) the thread count is left as it is. Returns the thread count."""
    return use_cpus(granted_cpus())


def renice_to_normal() -> None:
    """Niceness 0 for every thread of this process (Linux keeps niceness per thread; pools already exist)."""
    tasks = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]
    for tid in tasks:
        try:
            if os.getpriority(os.PRIO_PROCESS, int(tid)) > 0:
                os.setpriority(os.PRIO_PROCESS, int(tid), 0)
        except (OSError, AttributeError):  # lowering niceness needs CAP_SYS_NICE: keep Ray's
            log.debug("could not restore normal priority of thread %s", tid)
            return


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which its bf16 matmuls still run natively
_BF16_ISAS = ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX), i.e. faster than fp32.

    The hardware must have the instructions and torch must be allowed to use them: a process capped to AVX2
    (``ATEN_CPU_CAPABILITY=avx2`` or ``ONEDNN_MAX_CPU_ISA=AVX2``, as ``bench vs_trl --isa avx2`` does to stand
    for an AVX2-only CPU) emulates bf16 at about 1 GFLOP/s, hundreds of times slower than fp32.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if not any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes):
        return False
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        return False
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper().startswith(_BF16_ISAS)


def mixed_precision(device: torch.device, bf16: bool) -> AbstractContextManager | None:
    """bf16 autocast for ``optim.bf16`` where it pays: CUDA, and CPUs with native bf16 matmuls (2-3x fp32 there).

    None (run in the storage dtype) otherwise. The fp32 LM head of ``sparsepo.training.forward`` stays fp32 either way.
    """
    if not bf16:
        return None
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return None
