"""Model folders on remote storage, with ``file://`` URIs standing in for ``s3://``: one local copy per node,
loaded by every loader exactly like the local folder."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from sparsepo.io import local_copy, remote_listing


@pytest.fixture
def remote_model(tiny_llama_path, tmp_path, monkeypatch) -> tuple[str, Path]:
    """(``file://`` URI of a copy of tiny-llama in a fake bucket, the local original); the node cache in tmp."""
    bucket = tmp_path / "bucket" / "run" / "checkpoint_000001" / "policy"
    shutil.copytree(tiny_llama_path, bucket)
    monkeypatch.setenv("SPARSEPO_CACHE", str(tmp_path / "node-cache"))
    return f"file://{bucket}", Path(tiny_llama_path)


def _files(folder: Path) -> dict[str, bytes]:
    return {f.relative_to(folder).as_posix(): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_file_uri_standing_in_for_s3_loads_through_every_loader_like_the_local_folder(remote_model, tmp_path):
    from sparsepo.assets import resolve_model
    from sparsepo.config.preflight import check_models
    from sparsepo.config.schema import from_dict
    from sparsepo.evaluation.openllm import resolve_model as lm_eval_model
    from sparsepo.experiments.stages import model_fingerprint
    from sparsepo.generation import SamplingConfig, make_generator
    from sparsepo.training.models import load_causal_lm, load_tokenizer

    uri, local = remote_model
    fingerprint = model_fingerprint(uri)  # the listing only: nothing downloaded yet
    assert fingerprint["uri"] == uri and "model.safetensors" in fingerprint["files"]
    assert not (tmp_path / "node-cache" / "remote").exists()

    copy = Path(resolve_model(uri))
    assert copy.is_relative_to(tmp_path / "node-cache" / "remote") and _files(copy) == _files(local)
    assert Path(lm_eval_model(uri)) == copy
    ids = load_tokenizer(uri)("def f(x):", return_tensors="pt").input_ids
    assert ids.tolist() == load_tokenizer(str(local))("def f(x):", return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        remote_logits = load_causal_lm(uri).eval()(ids).logits
        local_logits = load_causal_lm(str(local)).eval()(ids).logits
    torch.testing.assert_close(remote_logits, local_logits, rtol=0, atol=0)

    sampling = SamplingConfig(n=1, temperature=0.0, max_new_tokens=4, seed=0)
    generator = make_generator("hf", uri)
    assert generator.model_path == uri  # passed on as is: downloaded where the model is loaded
    assert generator.generate(["a b"], sampling)[0][0].text == make_generator("hf", str(local)).generate(
        ["a b"], sampling)[0][0].text
    cfg = from_dict({"method": "dpo", "model": {"name": uri, "ref": uri}, "data": {"path": "unused.jsonl"}})
    assert check_models(cfg).vocab_size == load_tokenizer(str(local)).vocab_size


def test_missing_uri_is_an_error_naming_it(tmp_path, monkeypatch):
    from sparsepo.training.models import load_causal_lm

    monkeypatch.setenv("SPARSEPO_CACHE", str(tmp_path / "node-cache"))
    uri = f"file://{tmp_path}/bucket/nothing/policy"
    with pytest.raises(FileNotFoundError, match=f"{uri} does not exist"):
        load_causal_lm(uri)


def _copy_in_process(uri: str, cache: str) -> str:
    import os

    os.environ["SPARSEPO_CACHE"] = cache
    return str(local_copy(uri))


def test_concurrent_local_copies_on_one_node_yield_one_intact_copy(remote_model, tmp_path):
    uri, local = remote_model
    cache = str(tmp_path / "node-cache")
    with ProcessPoolExecutor(3) as pool:
        futures = [pool.submit(_copy_in_process, uri, cache) for _ in range(3)]
        results = []
        threads = [threading.Thread(target=lambda: results.append(str(local_copy(uri)))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results += [f.result() for f in futures]
    assert len(results) == 6 and len(set(results)) == 1
    assert _files(Path(results[0])) == _files(local)
    assert [p.name for p in (tmp_path / "node-cache" / "remote").iterdir()] == [Path(results[0]).name]  # no temps


def test_a_folder_rewritten_in_place_is_fetched_again(remote_model):
    uri, _ = remote_model
    first = local_copy(uri)
    assert local_copy(uri) == first  # cached
    folder = Path(uri.removeprefix("file://"))
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    second = local_copy(uri)
    assert second != first and (second / "config.json").read_text().endswith("\n\n")
    assert remote_listing(uri)["config.json"][0] == (second / "config.json").stat().st_size
