"""``sparsepo eval``'s settings: every bad one is one ``sparsepo: error:`` line and exit 2, before a suite runner
(the only code that loads a model) starts and before the output folder is made; ``--check`` validates and stops."""

from __future__ import annotations

import argparse
import json

import pytest

from sparsepo.cli import main
from sparsepo.config.flags import dataclass_from_args
from sparsepo.evaluation import cli
from sparsepo.evaluation.settings import EvalSettings


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A working folder with good and bad data files; every suite runner recorded (the real one still runs)."""
    monkeypatch.chdir(tmp_path)
    rows = [{"document": "a long text", "summary": "a text"}, {"document": "another text"}]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "good.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "reviews.jsonl").write_text('{"text": "a fine film"}\n{"review": "no text field"}\n')
    (tmp_path / "few.jsonl").write_text('{"text": "a fine film"}\n')
    (tmp_path / "empty-model").mkdir()
    started: list[str] = []
    for suite, runner in list(cli.RUNNERS.items()):
        monkeypatch.setitem(cli.RUNNERS, suite, lambda s, out, _r=runner: started.append(s.suite) or _r(s, out))
    return started


REFUSALS = {  # name: (flags after `sparsepo eval --out out`, the error line's text after "sparsepo: error: ")
    "no-suite": ([], "give --suite and --model (or --compare RESULTS ...)"),
    "no-model": (["--suite", "code"], "give --suite and --model (or --compare RESULTS ...)"),
    "compare-missing": (["--compare", "gone"], "--compare gone: no such file or folder"),
    "model-missing": (["--suite", "code", "--ks", "1", "--model", "/nonexistent"], "--model /nonexistent: no such folder"),
    "ref-missing": (["--suite", "sentiment", "--model", "tiny-llama", "--ref", "./gone"], "--ref ./gone: no such folder"),
    "model-no-config": (["--suite", "code", "--ks", "1", "--model", "./empty-model"], "--model ./empty-model: model folder"),
    "summarization-no-data": (["--suite", "summarization", "--model", "tiny-llama"], "--suite summarization needs --data"),
    "data-missing": (["--suite", "summarization", "--model", "tiny-llama", "--data", "gone.jsonl"],
                     "--data gone.jsonl: no such file"),
    "row-lacks-summary": (["--suite", "summarization", "--model", "tiny-llama", "--data", "docs.jsonl"],
                          "docs.jsonl: row 2, field 'summary': missing or not text"),
    "document-field-wrong": (["--suite", "summarization", "--model", "tiny-llama", "--data", "good.jsonl",
                              "--document-field", "article"], "good.jsonl: row 1, field 'article': missing or not text"),
    "nli-model-missing": (["--suite", "summarization", "--model", "tiny-llama", "--data", "good.jsonl",
                           "--nli-model", "/nli-gone"], "--nli-model /nli-gone: no such folder"),
    "reviews-missing": (["--suite", "sentiment", "--model", "tiny-llama", "--reviews", "gone.csv"],
                        "--reviews gone.csv: no such file"),
    "review-lacks-text": (["--suite", "sentiment", "--model", "tiny-llama", "--reviews", "reviews.jsonl"],
                          "reviews.jsonl: row 2, field 'text': missing or empty"),
    "too-few-reviews": (["--suite", "sentiment", "--model", "tiny-llama", "--reviews", "few.jsonl", "--n-prompts", "2"],
                        "--n-prompts 2: few.jsonl has only 1 reviews"),
    "reward-model-without-hf": (["--suite", "sentiment", "--model", "tiny-llama", "--reward-model", "x/y"],
                                "--reward-model x/y is only used with --reward hf"),
    "reward-model-missing": (["--suite", "sentiment", "--model", "tiny-llama", "--reward", "hf", "--reward-model",
                              "/rm-gone"], "--reward-model /rm-gone: no such folder"),
    "k-above-n": (["--suite", "code", "--model", "tiny-llama", "--n-samples", "2", "--ks", "1", "10"],
                  "--ks 10: pass@k needs --n-samples >= k, got --n-samples 2"),
    "dataset-unknown": (["--suite", "code", "--model", "tiny-llama", "--ks", "1", "--dataset", "humaneva"],
                        "--dataset humaneva: not humaneval, mbpp, a hub name or an existing file"),
    "mbpp-split-unknown": (["--suite", "code", "--model", "tiny-llama", "--ks", "1", "--dataset", "mbpp", "--split",
                            "dev"], "--split dev: MBPP splits are"),
    "include-path-missing": (["--suite", "openllm", "--model", "tiny-llama", "--include-path", "gone"],
                             "--include-path gone: no such folder"),
    "n-samples-0": (["--suite", "code", "--model", "tiny-llama", "--n-samples", "0"], "flags: n_samples: must be >= 1, got 0"),
    "n-prompts-0": (["--suite", "sentiment", "--model", "tiny-llama", "--n-prompts", "0"],
                    "flags: n_prompts: must be >= 1, got 0"),
    "max-new-tokens-0": (["--suite", "code", "--model", "tiny-llama", "--max-new-tokens", "0"],
                         "flags: max_new_tokens: must be >= 1, got 0"),
    "temperature-negative": (["--suite", "code", "--model", "tiny-llama", "--temperature", "-1"],
                             "flags: temperature: must be >= 0, got -1.0"),
    "temperatures-negative": (["--suite", "summarization", "--model", "tiny-llama", "--temperatures", "0.5", "-1"],
                              "flags: temperatures[1]: must be >= 0, got -1.0"),
    "top-p-0": (["--suite", "code", "--model", "tiny-llama", "--top-p", "0"], "flags: top_p: must be > 0, got 0.0"),
    "top-p-above-1": (["--suite", "code", "--model", "tiny-llama", "--top-p", "1.5"], "flags: top_p: must be <= 1, got 1.5"),
    "limit-0": (["--suite", "code", "--model", "tiny-llama", "--limit", "0"], "flags: limit: must be >= 1, got 0"),
    "ks-0": (["--suite", "code", "--model", "tiny-llama", "--ks", "0"], "flags: ks[0]: must be >= 1, got 0"),
    "gpu-memory-above-1": (["--suite", "code", "--model", "tiny-llama", "--gpu-memory-utilization", "1.2"],
                           "flags: gpu_memory_utilization: must be <= 1, got 1.2"),
    "n-samples-not-int": (["--suite", "code", "--model", "tiny-llama", "--n-samples", "2.5"],
                          "flags: n_samples: expected an integer, got 2.5"),
    "batch-size-0": (["--suite", "openllm", "--model", "tiny-llama", "--batch-size", "0"],
                     "flags: batch_size: expected an integer >= 1, 'auto' or 'auto:N', got 0"),
    "batch-size-word": (["--suite", "openllm", "--model", "tiny-llama", "--batch-size", "big"],
                        "flags: batch_size: expected an integer >= 1, 'auto' or 'auto:N', got 'big'"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_bad_setting_is_one_error_line_before_any_model_or_folder(name, files, tmp_path, capsys):
    flags, expected = REFUSALS[name]
    assert main(["eval", "--out", "out", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sparsepo: error: " + expected), err
    assert files == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags", [["--suite", "poetry"], ["--backend", "tpu"], ["--reward", "llm"]])
def test_unknown_choices_are_refused_by_the_parser(flags, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--model", "tiny-llama", *flags])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_check_validates_data_and_models_then_stops(files, tmp_path, capsys):
    argv = ["eval", "--suite", "summarization", "--model", "tiny-llama", "--data", "good.jsonl", "--out", "out", "--check"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "--data good.jsonl: 1 documents with summaries" in out and "--model tiny-llama: resolves" in out
    assert "check passed" in out and files == [] and not (tmp_path / "out").exists()
    assert main(["eval", "--compare", "good.jsonl", "--check"]) == 0


def test_flag_values_for_text_settings_stay_text():
    args = argparse.Namespace(system="2024", tasks=["no", "1.5"], batch_size="auto:4", ks=["1", "2"])
    s = dataclass_from_args(EvalSettings, args)
    assert (s.system, s.tasks, s.batch_size, s.ks) == ("2024", ("no", "1.5"), "auto:4", (1, 2))
    assert dataclass_from_args(EvalSettings, argparse.Namespace(batch_size="8")).batch_size == 8


def test_help_lists_choices_and_each_suite_in_its_own_section(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "--suite {sentiment,summarization,code,openllm}" in text and "--reward {vader,hf}" in text
    sections = [text.index(f"\n{g}:\n") for g in ("sentiment", "summarization", "code", "openllm")]
    assert sections == sorted(sections) and sections[0] < text.index("\n  --reviews") < sections[1]
    assert sections[2] < text.index("\n  --ks") < sections[3]


@pytest.mark.parametrize("n, ks", [(1, (1,)), (10, (1, 10)), (200, (1, 10, 100))])
def test_default_ks_are_those_the_samples_allow(n, ks):
    from sparsepo.evaluation.settings import EvalSettings, pass_ks

    assert pass_ks(EvalSettings(suite="code", model="tiny-llama", n_samples=n)) == ks
    assert pass_ks(EvalSettings(suite="code", model="tiny-llama", n_samples=n, ks=(1,))) == (1,)
