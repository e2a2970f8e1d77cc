"""Generation with Hugging Face ``model.generate``: the reference backend, slow but dependency-free.

Prompts are batched with left padding (so every row's continuation starts at the same column). Stop strings
are honoured twice: a stopping criterion ends a row as soon as its decoded continuation contains one (so no
compute is wasted and the row's length is known), and the returned text is cut before it. Sampling settings
are passed explicitly, never taken from the model's ``generation_config.json`` (which may set ``top_k`` or a
repetition penalty that the other backends would not apply).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from transformers import StoppingCriteria

from sparsepo.generation import Completion, SamplingConfig, find_stop, request_seed


def _with_pad_token(tokenizer, where: str):
    """``tokenizer`` itself if it has a pad token, else a copy whose pad token is its eos token."""
    if tokenizer.pad_token is not None:
        return tokenizer
    if tokenizer.eos_token is None:
        raise ValueError(f"{where}: tokenizer has neither a pad nor an eos token")
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class _StopStringCriteria(StoppingCriteria):
    """Ends a row once its decoded continuation contains a stop string; remembers at which length.

    ``ended[row]`` is the number of generated tokens when the row's stop string first appeared (the
    token that completed it included). Called by ``generate`` after every step with ``input_ids`` of
    shape (rows, prompt_len + generated).
    """

    def __init__(self, tokenizer, prompt_len: int, stop: Sequence[str], rows: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stop = tuple(stop)
        self.ended: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        generated = input_ids[:, self.prompt_len :]
        for row in range(input_ids.shape[0]):
            if self.ended[row] is None:
                text = self.tokenizer.decode(generated[row], skip_special_tokens=True)
                if find_stop(text, self.stop) >= 0:
                    self.ended[row] = generated.shape[1]
            done[row] = self.ended[row] is not None
        return done


class HFGenerator:
    """Batched ``model.generate`` on one device.

    Args:
        model: local folder or hub name of a causal LM (with its tokenizer).
        dtype: torch dtype name; default float32 on CPU (exact, and fast enough without bf16 units),
            the checkpoint's own dtype on GPU.
        device: default ``cuda`` when available, else ``cpu``.
        batch_size: prompts per ``generate`` call (each expands to ``n`` rows when sampling).

    Sampling seeds torch once per batch (from the call's seed and the batch's first index), so samples are
    reproducible for a given ``batch_size`` but change with it; vLLM's per-request seeds do not.
    """

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        dtype: str | None = None,
        device: str | None = None,
        batch_size: int = 8,
        trust_remote_code: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = str(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype or ("float32" if self.device == "cpu" else "auto")
        self.batch_size = batch_size
        self.trust_remote_code = trust_remote_code
        self._model = None
        self._tokenizer = None
        self._in_memory = False

    @classmethod
    def from_model(cls, model: torch.nn.Module, tokenizer, *, batch_size: int = 8) -> HFGenerator:
        """Generator over an already loaded causal LM (e.g. the policy inside a training loop), on the
        model's device and dtype, without copying it. Neither the model nor the tokenizer is modified
        (padding side is chosen per call); ``close()`` only drops the references."""
        gen = cls(getattr(model, "name_or_path", None) or "<in-memory model>", batch_size=batch_size,
                  device=str(next(model.parameters()).device))  # fmt: skip
        gen._model, gen._tokenizer = model, _with_pad_token(tokenizer, gen.model_path)
        gen._in_memory = True
        return gen

    def _load(self):
        if self._model is None:
            if self._in_memory:
                raise RuntimeError("this HFGenerator wrapped an in-memory model and has been closed")
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from sparsepo.assets import resolve_model

            source = resolve_model(self.model_path)  # a storage URI: downloaded on the node that generates
            tok = AutoTokenizer.from_pretrained(source, trust_remote_code=self.trust_remote_code)
            tok = _with_pad_token(tok, self.model_path)
            dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype, trust_remote_code=self.trust_remote_code
            )
            self._model = model.to(self.device).eval()
            self._tokenizer = tok
        return self._model, self._tokenizer

    def _eos_ids(self) -> list[int]:
        model, tok = self._load()
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tok.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        return [int(i) for i in ids]

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        """``[i][j]``: j-th completion of ``prompts[i]``; see :mod:`sparsepo.generation` for semantics."""
        if not prompts:
            return []
        model, tok = self._load()
        devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
        out: list[list[Completion]] = []
        # fork_rng: seeding per call must not disturb the caller's random state.
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                torch.manual_seed(request_seed(sampling.seed, start))
                out.extend(self._generate_batch(model, tok, prompts[start : start + self.batch_size], sampling))
        return out

    def _generate_batch(self, model, tok, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        from transformers import GenerationConfig, StoppingCriteriaList

        # left padding: every row's continuation starts in the same column
        enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left").to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        rows_per_prompt = 1 if sampling.greedy else sampling.n
        eos_ids = self._eos_ids()
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not sampling.greedy,
            num_return_sequences=rows_per_prompt,
            eos_token_id=eos_ids or None,
            pad_token_id=tok.pad_token_id,
            # top_k=0 switches HF's default top-k of 50 off, as on vLLM.
            **({} if sampling.greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}),
        )
        criteria = StoppingCriteriaList()
        stopper = None
        if sampling.stop:
            stopper = _StopStringCriteria(tok, prompt_len, sampling.stop, len(prompts) * rows_per_prompt)
            criteria.append(stopper)
        ids = model.generate(**enc, generation_config=config, stopping_criteria=criteria)
        generated = ids[:, prompt_len:].tolist()
        completions = [
            self._finish(tok, row, eos_ids, stopper.ended[r] if stopper else None, sampling.stop)
            for r, row in enumerate(generated)
        ]
        grouped = [completions[i * rows_per_prompt : (i + 1) * rows_per_prompt] for i in range(len(prompts))]
        if sampling.greedy:  # one decode per prompt, repeated n times
            grouped = [[Completion(g[0].text, list(g[0].token_ids), g[0].finish_reason) for _ in range(sampling.n)]
                       for g in grouped]  # fmt: skip
        return grouped

    @staticmethod
    def _finish(tok, row: list[int], eos_ids: list[int], stop_len: int | None, stop: Sequence[str]) -> Completion:
        """Trim padding after the row's end (EOS or stop string) and cut the text before the stop string."""
        end, reason = len(row), "length"
        eos_at = next((t for t, i in enumerate(row) if i in eos_ids), None)
        if eos_at is not None:
            end, reason = eos_at + 1, "stop"
        if stop_len is not None and stop_len < end:
            end, reason = stop_len, "stop"
        token_ids = row[:end]
        # A multi-byte character cut off by the end of generation decodes to U+FFFD; vLLM's incremental
        # detokenizer never emits it, so drop it here too.
        text = tok.decode(token_ids, skip_special_tokens=True).rstrip("\ufffd")
        cut = find_stop(text, stop) if stop else -1
        if cut >= 0:
            text, reason = text[:cut], "stop"
        return Completion(text=text, token_ids=token_ids, finish_reason=reason)

    def close(self) -> None:
        """Drop the model (reloaded from ``model_path`` on the next ``generate``; not for ``from_model``)."""
        self._model = self._tokenizer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> HFGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
