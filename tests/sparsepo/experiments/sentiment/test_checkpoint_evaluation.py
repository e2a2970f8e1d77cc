"""Out-of-loop evaluation: the reference point from a saved model folder, and checkpoint discovery."""

import json

import pytest

from sparsepo.evaluation.sentiment import PER_PROMPT_KEY, SentimentEvaluator, eval_metrics
from sparsepo.experiments.sentiment.evaluation import (
    CheckpointEvaluations,
    _evaluate,
    checkpoint_uri,
)
from sparsepo.training.models import load_causal_lm, load_tokenizer

PROMPTS = ["this movie was", "i hated the", "the acting is", "a film that"]


def test_reference_point_has_kl_exactly_zero_and_the_in_loop_samples(tiny_llama_path):
    args = {"prompts": PROMPTS, "reward": "vader", "ref": str(tiny_llama_path), "max_new_tokens": 6, "seed": 2}
    got = _evaluate(str(tiny_llama_path), args, "hf", is_reference=True)
    values = json.loads(got[PER_PROMPT_KEY])
    assert values["kl"] == [0.0] * 4 and values["kl_mc"] == [0.0] * 4 and got["eval/kl"] == 0.0
    # What the in-training evaluator reports for a policy still equal to the reference.
    model, tok = load_causal_lm(tiny_llama_path), load_tokenizer(tiny_llama_path)
    inline = eval_metrics(SentimentEvaluator(**args).samples(model, model, tok))
    assert json.loads(inline[PER_PROMPT_KEY])["reward"] == values["reward"]


def test_an_unknown_backend_is_a_clear_error(tiny_llama_path):
    args = {"prompts": PROMPTS[:1], "reward": "vader", "ref": str(tiny_llama_path), "max_new_tokens": 2}
    with pytest.raises(ValueError, match="unknown generation backend 'no-such-backend'"):
        _evaluate(str(tiny_llama_path), args, "no-such-backend", is_reference=False)


@pytest.mark.slow
def test_a_checkpoint_sampled_by_vllm_is_scored_and_its_kl_measured_by_hf(tiny_llama_path):
    """The cluster path: vLLM samples, the HF forward measures KL; the reference's own samples give KL 0."""
    args = {"prompts": PROMPTS, "reward": "vader", "ref": str(tiny_llama_path), "max_new_tokens": 6, "seed": 2}
    got = _evaluate(str(tiny_llama_path), args, "vllm", is_reference=True)
    values = json.loads(got[PER_PROMPT_KEY])
    assert len(values["reward"]) == 4 and all(0 <= r <= 1 for r in values["reward"])
    assert values["kl"] == [0.0] * 4  # policy == reference: exact zero through the HF forward


def test_checkpoint_paths_reported_inside_the_bucket_get_their_scheme_back():
    assert checkpoint_uri("bkt/runs/t/train/checkpoint_1", "s3://bkt/runs") == "s3://bkt/runs/t/train/checkpoint_1"
    assert checkpoint_uri("s3://bkt/x", "s3://bkt") == "s3://bkt/x"
    assert checkpoint_uri("/tmp/runs/t/checkpoint_1", "/tmp/runs") == "/tmp/runs/t/checkpoint_1"


def test_a_pickled_callback_carries_no_tasks():
    import pickle

    cb = CheckpointEvaluations({"prompts": []}, storage="s3://bkt/runs")
    cb._keys.append({"trial_id": "t", "step": 1, "path": "s3://bkt/runs/c"})
    cb._refs.append(object())
    copy = pickle.loads(pickle.dumps(cb))
    assert copy._keys == [] and copy._refs == [] and copy._storage == "s3://bkt/runs"


def test_paths_inside_an_object_store_become_uris_and_local_paths_stay():
    import pyarrow.fs

    from sparsepo.io import fs_uri

    assert fs_uri(pyarrow.fs.S3FileSystem(anonymous=True), "bkt/runs/t") == "s3://bkt/runs/t"
    assert fs_uri(pyarrow.fs.LocalFileSystem(), "/tmp/runs/t") == "/tmp/runs/t"
