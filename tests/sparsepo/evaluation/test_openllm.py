"""Open LLM Leaderboard suite end to end through real lm-eval on the shipped local tasks and a tiny model.

The scores are recomputed independently: loglikelihoods with transformers, acc_norm / baselines from the JSONL
data files, IFEval checks re-implemented for the few instructions the local prompts use.
"""

from __future__ import annotations

import json
import re
import shutil
import string
from collections import Counter
from pathlib import Path

import pytest
import torch

from sparsepo.evaluation import openllm_scores as lb
from sparsepo.evaluation.lm_eval_tasks import TASKS_DIR
from sparsepo.evaluation.openllm import ensure_punkt, load_results, resolve_model, run_openllm

TOY_TASKS = ["sparsepo_toy_mc", "sparsepo_toy_gen", "sparsepo_toy_ifeval"]
MC_DATA = {
    "sparsepo_toy_mc_binary": "toy_mc/data/binary.jsonl",
    "sparsepo_toy_mc_four": "toy_mc/data/four.jsonl",
}


def read_jsonl(name: str) -> list[dict]:
    with open(TASKS_DIR / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def tiny_model(tiny_gpt2_path) -> str:
    return str(tiny_gpt2_path)


@pytest.fixture(scope="module")
def hf_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("openllm_hf")
    row = run_openllm(
        tiny_model, "hf", tasks=TOY_TASKS, batch_size=4, include_path=TASKS_DIR, output_dir=out, label="tiny"
    )
    return row, out


def test_raw_results_and_samples_are_saved(hf_run):
    row, out = hf_run
    saved = load_results(out)
    assert set(saved["samples"]) == {
        "sparsepo_toy_mc_binary",
        "sparsepo_toy_mc_four",
        "sparsepo_toy_gen",
        "sparsepo_toy_ifeval",
    }
    for task, data in {
        **MC_DATA,
        "sparsepo_toy_gen": "toy_gen/data/gen.jsonl",
        "sparsepo_toy_ifeval": "toy_ifeval/data/ifeval.jsonl",
    }.items():
        assert len(saved["samples"][task]) == len(read_jsonl(data))
        assert saved["n-samples"][task]["effective"] == len(read_jsonl(data))
    assert saved["group_subtasks"]["sparsepo_toy_mc"] == list(MC_DATA)
    assert list(row.columns) == ["MC", "Gen", "IFEval Inst.", "IFEval Prompt", "Average"]
    assert list(row.index) == ["tiny"]
    # The scores written next to the raw results equal the returned row and those recomputed from the files.
    assert lb.table1({"tiny": saved}, "local_toy").loc["tiny"].tolist() == pytest.approx(
        row.loc["tiny"].tolist()
    )
    assert (out / "table1.md").read_text() == lb.to_markdown(row)
    assert (out / "subtasks.csv").read_text().startswith("column,task,subtask,metric")


def continuation_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """sum_t log p(continuation token t | context, earlier tokens), by a plain transformers forward pass."""
    ctx = tokenizer(context, add_special_tokens=False).input_ids
    full = tokenizer(context + continuation, add_special_tokens=False).input_ids
    assert full[: len(ctx)] == ctx, "context tokens must be a prefix"
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits.float(), dim=-1)[0]
    return sum(logp[t - 1, full[t]].item() for t in range(len(ctx), len(full)))


def test_multiple_choice_score_matches_independent_recomputation(hf_run, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    row, out = hf_run
    saved = load_results(out)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    normalised = []
    for task, data in MC_DATA.items():
        docs = read_jsonl(data)
        logged = {s["doc_id"]: s for s in saved["samples"][task]}
        correct = []
        for i, doc in enumerate(docs):
            context = f"Q: {doc['question']}\nA:"
            lls = [continuation_logprob(model, tokenizer, context, " " + c) for c in doc["choices"]]
            assert [r[0] for r in logged[i]["filtered_resps"]] == pytest.approx(lls, abs=1e-4)
            # acc_norm: loglikelihood per character of the choice
            per_char = [ll / len(c) for ll, c in zip(lls, doc["choices"], strict=True)]
            correct.append(max(range(len(per_char)), key=per_char.__getitem__) == doc["answer"])
        k = Counter(len(d["choices"]) for d in docs).most_common(1)[0][0]
        acc = sum(correct) / len(correct)
        assert saved["results"][task]["acc_norm,none"] == pytest.approx(acc)
        normalised.append(max(0.0, (acc - 1 / k) / (1 - 1 / k)) * 100)
    assert lb.num_choices(saved, "sparsepo_toy_mc_four") == 4  # one 3-choice question does not change it
    # Subtasks have 2 and 4 choices: normalised separately, then averaged without weights.
    assert row.loc["tiny", "MC"] == pytest.approx(sum(normalised) / len(normalised))


def test_generative_exact_match_has_zero_baseline(hf_run):
    row, out = hf_run
    saved = load_results(out)
    docs = read_jsonl("toy_gen/data/gen.jsonl")

    def norm(s: str) -> str:
        return s.lower().translate(str.maketrans("", "", string.punctuation)).strip()

    hits = [
        norm(s["filtered_resps"][0]) == norm(docs[s["doc_id"]]["answer"])
        for s in saved["samples"]["sparsepo_toy_gen"]
    ]
    assert row.loc["tiny", "Gen"] == pytest.approx(100 * sum(hits) / len(hits))
    assert lb.subtask_table(saved, "local_toy").set_index("column").loc["Gen", "baseline"] == 0.0


def follows(instruction: str, kwargs: dict, response: str) -> bool:
    """Strict IFEval checks of the instructions used by the local prompts, written from the IFEval paper."""
    if not response.strip():
        return False
    if instruction == "punctuation:no_comma":
        return "," not in response
    if instruction == "keywords:forbidden_words":
        return not any(re.search(rf"\b{w}\b", response, re.IGNORECASE) for w in kwargs["forbidden_words"])
    if instruction == "keywords:existence":
        return all(re.search(w, response, re.IGNORECASE) for w in kwargs["keywords"])
    if instruction == "startend:quotation":
        text = response.strip()
        return len(text) > 1 and text[0] == text[-1] == '"'
    if instruction == "change_case:capital_word_frequency":  # "less than 1000": any non-empty short reply
        assert kwargs["capital_relation"] == "less than" and kwargs["capital_frequency"] >= 100
        return True
    if instruction == "length_constraints:number_sentences":  # "at least 1": any non-empty reply
        assert kwargs["relation"] == "at least" and kwargs["num_sentences"] == 1
        return True
    raise AssertionError(f"no independent check for {instruction}")


def test_ifeval_strict_accuracies_match_independent_checks(hf_run):
    row, out = hf_run
    saved = load_results(out)
    docs = {d["key"]: d for d in read_jsonl("toy_ifeval/data/ifeval.jsonl")}
    inst, prompt = [], []
    for sample in saved["samples"]["sparsepo_toy_ifeval"]:
        doc = docs[sample["doc"]["key"]]
        response = sample["filtered_resps"][0]
        ok = [
            follows(i, kw, response) for i, kw in zip(doc["instruction_id_list"], doc["kwargs"], strict=True)
        ]
        inst.extend(ok)
        prompt.append(all(ok))
    assert row.loc["tiny", "IFEval Inst."] == pytest.approx(100 * sum(inst) / len(inst))
    assert row.loc["tiny", "IFEval Prompt"] == pytest.approx(100 * sum(prompt) / len(prompt))
    # The paper's average: mean of the four columns, IFEval's two accuracies each counted once.
    cols = ["MC", "Gen", "IFEval Inst.", "IFEval Prompt"]
    assert row.loc["tiny", "Average"] == pytest.approx(row.loc["tiny", cols].mean())


def test_chat_template_and_limit(tiny_model, punkt_data_dir, tmp_path):
    row = run_openllm(
        tiny_model,
        "hf",
        tasks=["sparsepo_toy_ifeval"],
        apply_chat_template=True,
        limit=2,
        include_path=TASKS_DIR,
        output_dir=tmp_path,
        nltk_data=punkt_data_dir,
    )
    saved = load_results(tmp_path)
    samples = saved["samples"]["sparsepo_toy_ifeval"]
    assert len(samples) == 2
    prompt = samples[0]["arguments"][0][0]
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    assert list(row.columns) == ["IFEval Inst.", "IFEval Prompt", "Average"]


def test_refuses_to_overwrite_saved_results(hf_run, tiny_model):
    _, out = hf_run
    before = (out / "results.json").read_bytes()
    with pytest.raises(FileExistsError, match="results.json"):
        run_openllm(tiny_model, "hf", tasks=TOY_TASKS, include_path=TASKS_DIR, output_dir=out)
    assert (out / "results.json").read_bytes() == before


def test_resolve_model(tmp_path, tiny_model):
    assert resolve_model(tiny_model) == str(Path(tiny_model).resolve())
    assert resolve_model("EleutherAI/pythia-14m") == "EleutherAI/pythia-14m"  # hub names pass through
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        resolve_model(str(tmp_path))
    # A trainer checkpoint folder evaluates its policy/ model folder.
    policy = tmp_path / "checkpoint-10" / "policy"
    policy.mkdir(parents=True)
    shutil.copy(Path(tiny_model) / "config.json", policy / "config.json")
    assert resolve_model(str(tmp_path / "checkpoint-10")) == str(policy.resolve())


def test_ensure_punkt_rejects_a_folder_without_punkt(tmp_path):
    with pytest.raises(FileNotFoundError, match="punkt_tab"):
        ensure_punkt(tmp_path)


def test_vllm_backend_agrees_with_hf(hf_run, tiny_model, tmp_path):
    _, hf_out = hf_run
    row = run_openllm(
        tiny_model,
        "vllm",
        tasks=["sparsepo_toy_mc", "sparsepo_toy_gen"],
        batch_size="auto",
        limit=4,
        include_path=TASKS_DIR,
        output_dir=tmp_path,
        dtype="float32",
        extra_model_args={"max_model_len": 256, "enforce_eager": True, "gpu_memory_utilization": 0.15},
    )
    vllm, hf = load_results(tmp_path), load_results(hf_out)
    for task in MC_DATA:
        for v in vllm["samples"][task]:
            h = hf["samples"][task][v["doc_id"]]
            assert [r[0] for r in v["filtered_resps"]] == pytest.approx(
                [r[0] for r in h["filtered_resps"]], abs=1e-4
            )
    for v in vllm["samples"]["sparsepo_toy_gen"]:
        assert v["filtered_resps"] == hf["samples"]["sparsepo_toy_gen"][v["doc_id"]]["filtered_resps"]
    assert row.loc[Path(tiny_model).name, "MC"] == pytest.approx(
        lb.column_scores(vllm, lb.LOCAL_TOY[:2])["MC"]
    )


def test_document_values_of_the_logged_samples_reproduce_lm_evals_scores(hf_run):
    """The per-document values the Table 1 intervals resample give back lm-eval's own task scores (IFEval's
    instruction level included: a list per document, pooled), and every interval holds its point estimate."""
    from sparsepo.evaluation.openllm_intervals import column_intervals, document_values
    from sparsepo.evaluation.openllm_scores import LOCAL_TOY, column_scores, leaf_tasks

    _, out = hf_run
    saved = load_results(out)
    for spec in LOCAL_TOY:
        for leaf in leaf_tasks(saved, spec.task):
            num, den = document_values(saved, leaf, spec)
            assert num.sum() / den.sum() == pytest.approx(saved["results"][leaf][spec.key])
    intervals = column_intervals(saved, "local_toy", n_resamples=200)
    for column, score in column_scores(saved, "local_toy").items():
        low, high = intervals[column]
        assert 0.0 <= low <= score + 1e-9 and score - 1e-9 <= high <= 100.0
