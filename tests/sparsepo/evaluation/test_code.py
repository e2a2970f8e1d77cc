"""HumanEval / MBPP loading and the end-to-end pass@k pipeline with a real sandbox.

The generator is a test double (canned completions per prompt); prompt building, truncation,
sandboxed execution and scoring are the real code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sparsepo.evaluation.code import (
    HUMANEVAL_STOP,
    MBPP_STOP,
    CodeProblem,
    evaluate_code,
    load_humaneval,
    load_mbpp,
    truncate,
)
from sparsepo.evaluation.sandbox import SandboxConfig
from sparsepo.generation import Completion, Generator, SamplingConfig

SANDBOX = SandboxConfig(timeout_s=3.0, memory_mb=512)


class CannedGenerator:
    """Returns fixed completions per prompt (cycled to n) and records the sampling it was given."""

    def __init__(self, name: str, canned: dict[str, list[str]]) -> None:
        self.name, self.canned, self.calls = name, canned, []

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        self.calls.append((list(prompts), sampling))
        return [[Completion(text=self.canned[p][j % len(self.canned[p])], finish_reason="stop")
                 for j in range(sampling.n)] for p in prompts]


class ExplodingGenerator:
    name = "canned"

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        raise AssertionError("everything was logged; nothing should be generated")


def reference_pass_at_k(n: int, c: int, k: int) -> float:
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def test_load_humaneval_from_package() -> None:
    problems = load_humaneval()
    assert len(problems) == 164
    first = problems[0]
    assert first.task_id == "HumanEval/0" and first.prompt.startswith("from typing import List")
    assert first.test.rstrip().endswith("check(has_close_elements)") and first.stop == HUMANEVAL_STOP
    assert load_humaneval(strip_prompt=True)[0].prompt == first.prompt.strip()


def test_canonical_humaneval_solutions_pass() -> None:
    problems = load_humaneval()[::8]  # 21 problems across the set
    canned = {p.prompt: [p.canonical_solution] for p in problems}
    result = evaluate_code(CannedGenerator("oracle", canned), problems, SamplingConfig(n=1), ks=(1,),
                           sandbox=SANDBOX, progress=False)
    failing = result.table.loc[result.table["c"] != 1, "task_id"].tolist()
    assert failing == [] and result.summary["pass@1"] == 1.0


def test_evaluate_code_exact_pass_at_k(tmp_path: Path) -> None:
    problems = load_humaneval()[:5]
    sol = [p.canonical_solution for p in problems]
    wrong = "    raise NotImplementedError\n"
    canned = {
        problems[0].prompt: [sol[0]],                                                   # 4 of 4
        problems[1].prompt: [sol[1], "    return []\n"],                               # 2 of 4
        problems[2].prompt: [sol[2] + "\ndef helper(:\n    broken syntax\n",          # cut at \ndef: passes
                             "    import sys\n    sys.exit(0)\n", "    import os\n    os._exit(0)\n", wrong],
        problems[3].prompt: [wrong],                                                    # 0 of 4
        problems[4].prompt: [sol[4], sol[4], sol[4], "    while True:\n        pass\n"],  # 3 of 4, 1 timeout
    }
    expected_c = [4, 2, 1, 0, 3]
    generator = CannedGenerator("canned", canned)
    sampling = SamplingConfig(n=4, temperature=0.8, max_new_tokens=256)
    samples_path = tmp_path / "humaneval_samples.jsonl"
    result = evaluate_code(generator, problems, sampling, ks=(1, 2, 4, 10), sandbox=SANDBOX, workers=2,
                           samples_path=samples_path, progress=False)

    table = result.table
    assert table["task_id"].tolist() == [p.task_id for p in problems]
    assert table["c"].tolist() == expected_c and (table["n"] == 4).all()
    assert table["n_timeout"].tolist() == [0, 0, 0, 0, 1] and (table["n_error"] == 0).all()
    assert "pass@10" not in table.columns and result.summary["ks"] == [1, 2, 4]
    assert any("pass@10 omitted" in note for note in result.summary["notes"])
    for k in (1, 2, 4):
        per_problem = [reference_pass_at_k(4, c, k) for c in expected_c]
        assert table[f"pass@{k}"].tolist() == pytest.approx(per_problem, abs=1e-12)
        assert result.summary[f"pass@{k}"] == pytest.approx(sum(per_problem) / 5, abs=1e-12)
    assert result.summary["pass@1"] == pytest.approx(10 / 20)

    # the backend was asked to stop at the HumanEval stop strings, and truncation happened anyway
    (_, used), = generator.calls
    assert set(HUMANEVAL_STOP) <= set(used.stop) and used.n == 4 and used.temperature == 0.8
    cut = [s for s in result.samples if s["task_id"] == problems[2].task_id and s["sample"] == 0][0]
    assert "helper" not in cut["completion"] and cut["passed"]
    assert len(result.samples) == 20 and {s["status"] for s in result.samples} == {"passed", "failed", "timeout"}

    # samples are stored; a rerun reuses the logged generations and scores identically
    out = result.write_samples(tmp_path / "scored.jsonl")
    assert [json.loads(line)["passed"] for line in out.read_text().splitlines()] == [s["passed"] for s in result.samples]
    rerun = evaluate_code(ExplodingGenerator(), problems, sampling, ks=(1, 2, 4), sandbox=SANDBOX, workers=2,
                          samples_path=samples_path, progress=False)
    assert rerun.table["c"].tolist() == expected_c

    items = result.items(system="canned", suite="humaneval")
    assert len(items) == 15 and set(items["metric"]) == {"pass@1", "pass@2", "pass@4"}


def test_generator_returning_wrong_shape_is_an_error() -> None:
    problem = CodeProblem("T/0", "def f():\n", "assert f() == 1")

    class Short:
        name = "short"

        def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
            return [[Completion("    return 1\n")] for _ in prompts]

    assert isinstance(Short(), Generator)
    with pytest.raises(ValueError, match="expected 3 each"):
        evaluate_code(Short(), [problem], SamplingConfig(n=3), progress=False)


def test_bad_ks_rejected_before_generating() -> None:
    problem = CodeProblem("T/0", "def f():\n", "assert f() == 1")
    with pytest.raises(ValueError, match="positive integers"):
        evaluate_code(ExplodingGenerator(), [problem], SamplingConfig(n=2), ks=(1, 0), progress=False)


def test_truncate_at_earliest_stop() -> None:
    assert truncate("    return x\nprint(1)\ndef g():", HUMANEVAL_STOP) == "    return x"
    assert truncate("    return x\n", HUMANEVAL_STOP) == "    return x\n"


MBPP_ROWS = [
    {"task_id": 2, "text": "Write a function to double a number.", "code": "def double(x):\n    return 2 * x",
     "test_list": ["assert double(2) == 4", "assert double(0) == 0"], "test_setup_code": ""},
    {"task_id": 11, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
     "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], "test_setup_code": ""},
    {"task_id": 12, "text": "Write a function returning the square root of x.",
     "code": "def root(x):\n    return math.sqrt(x)",
     "test_list": ["assert root(9) == 3", "assert root(4) == 2"], "test_setup_code": "import math"},
    {"task_id": 520, "text": "Write a function to negate x.", "code": "def neg(x):\n    return -x",
     "test_list": ["assert neg(1) == -1"], "test_setup_code": ""},
    {"task_id": 700, "text": "Write a function to square x.", "code": "def sq(x):\n    return x * x",
     "test_list": ["assert sq(3) == 9"], "test_setup_code": ""},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_mbpp_splits_by_task_id(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mbpp.jsonl", MBPP_ROWS)
    assert [p.task_id for p in load_mbpp(path, "test")] == ["MBPP/11", "MBPP/12"]
    assert [p.task_id for p in load_mbpp(path, "train")] == ["MBPP/2", "MBPP/700"]
    assert [p.task_id for p in load_mbpp(path, "validation")] == ["MBPP/520"]
    add = load_mbpp(path, "test")[0]
    assert add.prompt == '"""\nWrite a function to add two numbers.\nassert add(1, 2) == 3\n"""\n'
    assert add.stop == MBPP_STOP and "assert add(-1, 1) == 0" in add.test
    json_list = tmp_path / "mbpp.json"
    json_list.write_text(json.dumps(MBPP_ROWS))
    assert [p.task_id for p in load_mbpp(json_list, "prompt")] == ["MBPP/2"]
    with pytest.raises(ValueError, match="unknown MBPP split"):
        load_mbpp(path, "dev")


@pytest.mark.parametrize(
    ("broken", "message"),
    [({"test_list": []}, "row 3 \\(task_id=12\\): field 'test_list' must be a non-empty list"),
     ({"task_id": "12"}, "row 3: field 'task_id' must be an integer"),
     ({"text": None}, "row 3 \\(task_id=12\\): field 'text' must be a non-empty string")],
)
def test_load_mbpp_names_file_row_and_field(tmp_path: Path, broken: dict, message: str) -> None:
    rows = [dict(r) for r in MBPP_ROWS]
    rows[2].update(broken)
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=f"bad.jsonl: {message}"):
        load_mbpp(path, "test")
    rows[2].pop("code")
    path = write_jsonl(tmp_path / "missing.jsonl", [r for r in rows if r is not rows[2]] + [{"task_id": 5}])
    with pytest.raises(ValueError, match="missing.jsonl: row 5 \\(task_id=5\\): missing field 'text'"):
        load_mbpp(path, "test")


def test_load_mbpp_from_hub_mocked_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # No hub here: stand in for `datasets.load_dataset("mbpp", "full")` with its split layout.
    import datasets

    calls = []

    def fake_load_dataset(name: str, config: str) -> dict[str, list[dict]]:
        calls.append((name, config))
        return {"train": [MBPP_ROWS[4]], "test": MBPP_ROWS[1:3], "validation": [MBPP_ROWS[3]], "prompt": [MBPP_ROWS[0]]}

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert [p.task_id for p in load_mbpp("mbpp", "train")] == ["MBPP/2", "MBPP/700"]
    assert calls == [("mbpp", "full")]


def test_evaluate_code_on_mbpp(tmp_path: Path) -> None:
    problems = load_mbpp(write_jsonl(tmp_path / "mbpp.jsonl", MBPP_ROWS), "test")
    add, root = problems
    canned = {
        add.prompt: [add.canonical_solution + "\nassert add(1, 1) == 3\n"],  # the bogus assert is cut off
        root.prompt: [root.canonical_solution, "def root(x):\n    return x / 3"],  # needs test_setup_code
    }
    result = evaluate_code(CannedGenerator("canned", canned), problems, SamplingConfig(n=2), ks=(1, 2),
                           sandbox=SANDBOX, progress=False)
    assert result.table["c"].tolist() == [2, 1]
    assert result.summary["pass@1"] == pytest.approx((1.0 + 0.5) / 2)
    assert result.summary["pass@2"] == pytest.approx(1.0)
