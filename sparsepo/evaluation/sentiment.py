"""Sentiment suite (paper 3.2): sample completions of review prefixes, score P(positive), measure KL to the reference.

Per sample: ``reward`` = P(positive | prompt + completion) from a :mod:`sparsepo.evaluation.reward_models` scorer, and the
response-level KL of the policy to the reference on that sample, both estimates of :mod:`sparsepo.evaluation.kl`.
Per prompt means and bootstrap CIs come from :func:`sparsepo.evaluation.report.aggregate_items`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
from torch import nn

from sparsepo.evaluation.kl import response_kl
from sparsepo.evaluation.report import aggregate_items, format_setting
from sparsepo.evaluation.reward_models import SentimentScorer
from sparsepo.generation import Generator, SamplingConfig
from sparsepo.training.forward import AdaptersOff

SUITE = "sentiment"
METRICS = ("reward", "kl", "kl_mc")
#: Reported metric holding the per-prompt values as JSON ``{"reward": [...], "kl": [...], "kl_mc": [...]}``, so the
#: driver computes CIs and paired tests from the items rather than trusting a mean.
PER_PROMPT_KEY = "eval/per_prompt"


def sample_and_score(
    generator: Generator,
    policy: nn.Module,
    ref: nn.Module | AdaptersOff,
    tokenizer: Any,
    prompts: Sequence[str],
    scorer: SentimentScorer,
    sampling: SamplingConfig,
    *,
    batch_size: int = 8,
    chunk_size: int = 1024,
) -> pd.DataFrame:
    """One row per (prompt, sample): prompt_id, sample, prompt, completion, reward, kl, kl_mc, tokens.

    ``generator`` must sample from ``policy`` (same weights), and tokenise prompts as ``tokenizer(prompt)`` does,
    so that the KL is measured on exactly the sequences that were sampled.
    """
    completions = generator.generate(list(prompts), sampling)
    rows, prompt_ids, completion_ids = [], [], []
    for i, (prompt, samples) in enumerate(zip(prompts, completions, strict=True)):
        ids = tokenizer(prompt)["input_ids"]
        for j, c in enumerate(samples):
            rows.append({"prompt_id": i, "sample": j, "prompt": prompt, "completion": c.text})
            prompt_ids.append(ids)
            completion_ids.append(c.token_ids)
    rewards = scorer.score([r["prompt"] + r["completion"] for r in rows])
    kls = response_kl(policy, ref, prompt_ids, completion_ids, tokenizer.pad_token_id, batch_size, chunk_size)
    for row, reward, kl in zip(rows, rewards, kls, strict=True):
        row.update(reward=float(reward), **kl)
    return pd.DataFrame(rows)


def summarise(samples: pd.DataFrame, system: str, setting: dict[str, Any] | None = None, **kw: Any) -> pd.DataFrame:
    """Tidy table: mean over prompts (each prompt's samples averaged first) of reward, kl and kl_mc, with CIs."""
    per_prompt = samples.groupby("prompt_id")[list(METRICS)].mean()
    items = [
        {"system": system, "suite": SUITE, "metric": m, "setting": format_setting(setting or {}), "item": str(pid), "value": v}
        for m in METRICS
        for pid, v in per_prompt[m].items()
    ]
    return aggregate_items(pd.DataFrame(items), **kw)


def per_prompt_values(samples: pd.DataFrame) -> dict[str, list[float]]:
    """Metric -> per-prompt values (each prompt's samples averaged), in prompt order; shape (n_prompts,) each."""
    per_prompt = samples.groupby("prompt_id", sort=True)[list(METRICS)].mean()
    return {m: per_prompt[m].astype(float).tolist() for m in METRICS}


def eval_metrics(samples: pd.DataFrame) -> dict[str, float | str]:
    """The reported metrics of one evaluation: ``eval/<metric>`` means over prompts and :data:`PER_PROMPT_KEY`."""
    values = per_prompt_values(samples)
    out: dict[str, float | str] = {f"eval/{m}": float(sum(v) / len(v)) for m, v in values.items()}
    out[PER_PROMPT_KEY] = json.dumps(values)
    return out


class SentimentEvaluator:
    """In-training evaluator (``run.evaluator="sparsepo.evaluation.sentiment:SentimentEvaluator"``).

    Every ``run.eval_every`` steps rank 0 samples one completion per held-out prompt from the current policy
    (HF ``generate`` on the in-memory weights), and reports ``eval/reward``, ``eval/kl`` and ``eval/kl_mc``
    (means over prompts) and the per-prompt values (:data:`PER_PROMPT_KEY`). The sampling seed is the same at
    every evaluation, so successive points differ by the policy only. Reference-free methods get the reference
    loaded here from ``ref``. :meth:`samples` is the same evaluation for callers outside training (the
    reference point, checkpoints evaluated after or beside training), optionally with another generator.
    """

    def __init__(
        self,
        prompts: list[str],
        reward: str = "vader",
        reward_kwargs: dict[str, Any] | None = None,
        ref: str | None = None,
        max_new_tokens: int = 48,
        temperature: float = 1.0,
        seed: int = 0,
        batch_size: int = 8,
    ):
        from sparsepo.evaluation.reward_models import make_scorer

        self.prompts = list(prompts)
        self.scorer = make_scorer(reward, **(reward_kwargs or {}))
        self.ref_path = ref
        self._ref: nn.Module | None = None
        self.sampling = SamplingConfig(n=1, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
        self.batch_size = batch_size

    def _reference(self, ref: nn.Module | AdaptersOff | None, device: Any) -> nn.Module | AdaptersOff:
        if ref is not None:
            return ref
        if self._ref is None:
            if self.ref_path is None:
                raise ValueError("SentimentEvaluator needs `ref` (a model path) for reference-free methods")
            from sparsepo.training.models import load_causal_lm

            self._ref = load_causal_lm(self.ref_path).to(device).eval()
        return self._ref

    def samples(
        self, policy: nn.Module, ref: nn.Module | AdaptersOff | None, tokenizer: Any, generator: Generator | None = None
    ) -> pd.DataFrame:
        """One row per (prompt, sample) as :func:`sample_and_score`; ``generator`` must hold ``policy``'s weights
        (default: HF ``generate`` on ``policy`` itself)."""
        from sparsepo.generation.hf import HFGenerator

        was_training = policy.training
        policy.eval()
        try:
            device = next(policy.parameters()).device
            gen = generator or HFGenerator.from_model(policy, tokenizer, batch_size=self.batch_size)
            return sample_and_score(
                gen, policy, self._reference(ref, device), tokenizer, self.prompts, self.scorer, self.sampling,
                batch_size=self.batch_size,
            )
        finally:
            policy.train(was_training)

    def __call__(
        self, policy: nn.Module, ref: nn.Module | AdaptersOff | None, tokenizer: Any, step: int
    ) -> dict[str, float | str]:
        return eval_metrics(self.samples(policy, ref, tokenizer))
