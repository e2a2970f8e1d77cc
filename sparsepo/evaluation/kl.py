"""Response-level KL of a policy to its reference on the policy's own samples (METHODS.md "Evaluation quantities").

For a sample y ~ pi(.|x) two estimates of KL(pi(.|x) || ref(.|x)) are returned, in nats:

- ``kl``: sum_t KL(pi(.|x, y_<t) || ref(.|x, y_<t)), the exact per-token KL along the sampled path (full vocabulary);
  unbiased for the sequence KL and of low variance;
- ``kl_mc``: sum_t [log pi(y_t|.) - log ref(y_t|.)], the plain Monte-Carlo estimate on the same sample.

Both models run batched, without gradient, through the same chunked fp32 LM-head code as training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparsepo.data.preference import PreferenceCollator
from sparsepo.training.forward import (
    AdaptersOff,
    chunked_token_stats,
    decoder_forward,
    lm_head,
    response_positions,
)


@torch.no_grad()
def response_kl(
    policy: nn.Module,
    ref: nn.Module | AdaptersOff,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    batch_size: int = 8,
    chunk_size: int = 1024,
) -> list[dict[str, float]]:
    """Per sample ``{"kl", "kl_mc", "tokens"}`` for ``prompt_ids[i] + completion_ids[i]`` (completion scored only).

    ``prompt_ids`` must be the tokens the sampler conditioned on (tokenizer(prompt) as the backend did).
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    device = next(policy.parameters()).device
    collate = PreferenceCollator(pad_token_id)
    out: list[dict[str, float]] = []
    for start in range(0, len(prompt_ids), batch_size):
        rows = [
            {"prompt_ids": list(p), "chosen_ids": list(c), "rejected_ids": []}
            for p, c in zip(prompt_ids[start : start + batch_size], completion_ids[start : start + batch_size], strict=True)
        ]
        batch = {k: v[: len(rows)].to(device) for k, v in collate(rows).items()}  # chosen half only
        where, labels = response_positions(batch)
        hp, _ = decoder_forward(policy, batch["input_ids"], batch["attention_mask"])
        hr, _ = decoder_forward(ref, batch["input_ids"], batch["attention_mask"])
        stats = chunked_token_stats(
            hp[:, :-1][where], labels, lm_head(policy), hr[:, :-1][where], lm_head(ref), "pi||ref", chunk_size
        )
        row_of = where.nonzero()[:, 0]
        n = len(rows)
        kl = torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, row_of, stats["kl"].double())
        mc = torch.zeros(n, dtype=torch.float64, device=device).index_add_(
            0, row_of, (stats["logps"] - stats["ref_logps"]).double()
        )
        count = where.sum(-1)
        out += [{"kl": float(k), "kl_mc": float(m), "tokens": int(t)} for k, m, t in zip(kl, mc, count, strict=True)]
    return out
