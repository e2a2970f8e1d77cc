"""The stage helpers every experiment shares: cache keys, storage folders, publishing and the last evaluations."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sparsepo.experiments.stages import (
    cache_key,
    last_evaluations,
    local_cache,
    output_dir,
    publish,
    train_sft,
    write_rows,
)


def test_cache_key_depends_on_every_value_but_not_on_key_order():
    assert cache_key(a=1, b=[1, 2]) == cache_key(b=[1, 2], a=1)
    assert len({cache_key(a=1, b=[1, 2]), cache_key(a=2, b=[1, 2]), cache_key(a=1, b=[2, 1]), cache_key(a=1)}) == 4


def test_local_storage_holds_outputs_and_caches_and_workers_read_the_file_in_place(tmp_path):
    assert output_dir(str(tmp_path), "exp") == tmp_path / "exp"
    assert local_cache(str(tmp_path), "pairs") == tmp_path / "pairs"
    path = write_rows(tmp_path / "pairs" / "p.jsonl", [{"a": 1}, {"a": 2}])
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"a": 1}, {"a": 2}]
    assert not path.with_suffix(".tmp").exists()
    assert publish(str(tmp_path), "exp", path) == str(path)


def test_remote_storage_gets_a_copy_for_the_workers_and_caches_stay_on_the_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEPO_CACHE", str(tmp_path / "cache"))
    remote = f"file://{tmp_path}/bucket"  # a URI: what workers on other nodes would read
    assert output_dir(remote, "exp").as_posix() == "exp"
    assert local_cache(remote, "sft") == tmp_path / "cache" / "sft"  # the one cache, wherever the command starts
    path = write_rows(tmp_path / "local.jsonl", [{"x": "y"}])
    uri = publish(remote, "exp", path)
    assert uri == f"{remote}/exp/local.jsonl"
    assert (tmp_path / "bucket" / "exp" / "local.jsonl").read_text() == path.read_text()


def test_publish_uploads_a_folder_under_remote_storage_and_keeps_a_local_one_in_place(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "w.bin").write_bytes(b"abc")
    assert publish(str(tmp_path / "runs"), "exp", folder) == str(folder)
    uri = publish(f"file://{tmp_path}/bucket", "exp", folder)
    assert uri == f"file://{tmp_path}/bucket/exp/model"
    assert (tmp_path / "bucket" / "exp" / "model" / "sub" / "w.bin").read_bytes() == b"abc"
    assert (tmp_path / "bucket" / "exp" / "model" / "config.json").read_text() == "{}"


def test_last_evaluations_takes_each_variants_last_evaluated_row_and_skips_failed_ones():
    results = pd.DataFrame([
        {"v": "dpo", "step": 1, "eval/score": 0.1, "eval/other": 5.0, "loss": 1.0},
        {"v": "dpo", "step": 2, "eval/score": 0.3, "eval/other": float("nan"), "loss": 0.9},
        {"v": "dpo", "step": 3, "eval/score": float("nan"), "eval/other": float("nan"), "loss": 0.8},
        {"v": "sparsepo", "step": 1, "eval/score": float("nan"), "eval/other": float("nan"), "loss": 0.7},
    ])
    lines = []
    got = last_evaluations(results, "v", ["dpo", "sparsepo"], "eval/score", "exp", lines.append)
    assert got == {"dpo": {"score": 0.3}}
    assert lines == ["[exp] warning: trial sparsepo has no evaluation (failed?); left out of the table",
                     "[exp] sweep: 1 of 2 trials evaluated"]


@pytest.mark.slow
def test_train_sft_on_file_uri_storage_standing_in_for_s3_returns_a_uri_that_a_second_call_finds(
        tmp_path, monkeypatch, tiny_llama_path):
    import ray

    from sparsepo.training.models import load_causal_lm

    monkeypatch.setenv("SPARSEPO_CACHE", str(tmp_path / "node"))  # the node's copies (Ray workers inherit it)
    storage = f"file://{tmp_path}/bucket/runs"
    rows = [{"prompt": f"{i} plus one is", "completion": f" {i + 1}"} for i in range(4)]
    kw = dict(model=str(tiny_llama_path), storage_path=storage, steps=1, lr=1e-3, tag="t",
              train={"data": {"max_length": 32, "max_prompt_length": 16}, "optim": {"batch_size": 2},
                     "run": {"num_workers": 1, "use_gpu": False, "seed": 0}})
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    # After ray.init: Ray keeps its auth token under the HOME it started with.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the driver-side cache of a remote storage
    try:
        logged: list[str] = []
        policy = train_sft(rows, **kw, log=logged.append)
        assert policy.startswith(f"{storage}/sft/t-sft-") and policy.endswith("/policy")
        assert "/train/checkpoint_" in policy
        assert (tmp_path / "bucket" / "runs" / "sft" / policy.split("/sft/")[1] / "config.json").is_file()
        assert (tmp_path / "node" / "sft").is_dir()  # the rows file, written on the driver into $SPARSEPO_CACHE
        assert train_sft(rows, **kw, log=logged.append) == policy
        assert logged[-1] == f"[t] sft: cached {policy}"
    finally:
        ray.shutdown()
    assert load_causal_lm(policy).config.model_type == "llama"  # through a node-local copy
    assert [p.name.split("-")[0] for p in sorted((tmp_path / "node" / "remote").iterdir())] == ["policy", "sft.jsonl"]
