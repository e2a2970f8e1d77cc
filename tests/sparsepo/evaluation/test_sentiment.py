"""Sentiment suite on a real tiny model: HF sampling, VADER reward, response KL; and the in-training evaluator."""

import pytest

from sparsepo.evaluation.kl import response_kl
from sparsepo.evaluation.reward_models import make_scorer
from sparsepo.evaluation.sentiment import SentimentEvaluator, sample_and_score, summarise
from sparsepo.generation import SamplingConfig
from sparsepo.generation.hf import HFGenerator
from sparsepo.training.models import load_causal_lm, load_tokenizer

PROMPTS = ["this movie was", "i hated the", "the acting is"]


@pytest.fixture(scope="module")
def models(tiny_llama_path):
    import torch

    tok = load_tokenizer(tiny_llama_path)
    policy, ref = load_causal_lm(tiny_llama_path), load_causal_lm(tiny_llama_path)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))  # a policy that moved away from its reference
    return tok, policy, ref


def test_samples_are_scored_and_kl_is_measured_on_exactly_the_sampled_tokens(models):
    tok, policy, ref = models
    gen = HFGenerator.from_model(policy, tok)
    sampling = SamplingConfig(n=2, temperature=1.0, max_new_tokens=8, seed=3)
    df = sample_and_score(gen, policy, ref, tok, PROMPTS, make_scorer("vader"), sampling)
    assert len(df) == 6 and set(df["sample"]) == {0, 1}
    assert ((df["reward"] >= 0) & (df["reward"] <= 1)).all()
    assert (df["kl"] > 0).all() and (df["tokens"] > 0).all()
    # Recompute from a fresh sampling with the same seed: same completions, same KL.
    again = gen.generate(PROMPTS, sampling)
    ids = [c.token_ids for pair in again for c in pair]
    prompts = [tok(p)["input_ids"] for p in PROMPTS for _ in range(2)]
    kl = response_kl(policy, ref, prompts, ids, tok.pad_token_id)
    assert df["kl"].tolist() == pytest.approx([r["kl"] for r in kl], rel=1e-6)
    table = summarise(df, "tiny", {"temperature": 1.0}, n_resamples=200)
    assert set(table["metric"]) == {"reward", "kl", "kl_mc"}
    assert table.set_index("metric").loc["kl", "value"] == pytest.approx(df.groupby("prompt_id")["kl"].mean().mean())


def test_evaluator_reports_zero_kl_for_the_reference_itself(models, tiny_llama_path):
    tok, policy, ref = models
    ev = SentimentEvaluator(PROMPTS, reward="vader", ref=str(tiny_llama_path), max_new_tokens=6)
    same = ev(ref, ref, tok, step=1)
    assert same["eval/kl"] == pytest.approx(0.0, abs=1e-9) and 0 <= same["eval/reward"] <= 1
    moved = ev(policy, None, tok, step=2)  # reference-free method: the evaluator loads `ref` itself
    assert moved["eval/kl"] > 0
    assert policy.training is False or policy.training is True  # mode restored, no exception


def test_reported_per_prompt_values_are_the_prompt_means(models):
    import json

    from sparsepo.evaluation.sentiment import PER_PROMPT_KEY, eval_metrics

    tok, policy, ref = models
    ev = SentimentEvaluator(PROMPTS, reward="vader", max_new_tokens=6, seed=5)
    samples = ev.samples(policy, ref, tok)
    metrics = eval_metrics(samples)
    values = json.loads(metrics[PER_PROMPT_KEY])
    means = samples.groupby("prompt_id")[["reward", "kl"]].mean()
    assert values["reward"] == means["reward"].tolist() and values["kl"] == means["kl"].tolist()
    assert metrics["eval/reward"] == pytest.approx(sum(values["reward"]) / len(PROMPTS))
    assert ev(policy, ref, tok, step=3) == metrics  # the in-training call is the same evaluation, same seed
    # The reference scored against itself: KL exactly 0, not merely small.
    same = eval_metrics(ev.samples(ref, ref, tok))
    assert json.loads(same[PER_PROMPT_KEY])["kl"] == [0.0] * len(PROMPTS) and same["eval/kl_mc"] == 0.0
