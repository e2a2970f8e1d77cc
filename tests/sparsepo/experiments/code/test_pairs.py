"""Code pairs (appendix B.5) from canonical and deliberately broken HumanEval solutions, run in the real sandbox.

The generator is a test double (canned completions per prompt); execution, pairing and caching are the real code.
"""

from __future__ import annotations

import json

from sparsepo.evaluation.code import load_humaneval
from sparsepo.evaluation.sandbox import SandboxConfig, run_program
from sparsepo.experiments.code.pairs import cached_code_pairs, pair_solutions, sample_code_pairs
from sparsepo.generation import Completion, SamplingConfig

SANDBOX = SandboxConfig(timeout_s=3.0, memory_mb=512)
WRONG = ["    return None\n", "    raise ValueError('no')\n", "    return 1 +\n"]  # wrong value, raises, syntax


class CannedGenerator:
    def __init__(self, canned: dict[str, list[str]]) -> None:
        self.name, self.canned, self.calls = "canned", canned, 0

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        self.calls += 1
        return [[Completion(self.canned[p][j % len(self.canned[p])], finish_reason="stop") for j in range(sampling.n)]
                for p in prompts]


def problems_and_canned():
    problems = load_humaneval()[:4]
    sol = [p.canonical_solution for p in problems]
    canned = {
        problems[0].prompt: [sol[0], WRONG[0], sol[0], WRONG[1]],  # one distinct pass, two fails -> 1 pair
        problems[1].prompt: [sol[1]],                               # passes only -> no pair
        # two distinct passing solutions (the second an equivalent rewrite) and a blank one -> 2 pairs
        problems[2].prompt: [sol[2], "    return number - int(number)\n", WRONG[2], "   \n"],
        problems[3].prompt: WRONG,                                  # fails only -> no pair
    }
    return problems, canned


def test_pairs_are_passing_vs_failing_solutions_of_the_same_problem():
    problems, canned = problems_and_canned()
    rows, result = sample_code_pairs(CannedGenerator(canned), problems, SamplingConfig(n=4, temperature=1.0),
                                     sandbox=SANDBOX, workers=2, seed=3)
    assert result.table["c"].tolist() == [2, 4, 2, 0]  # the sandbox really ran every program
    by_id = {p.task_id: p for p in problems}
    assert [r["task_id"] for r in rows] == [problems[0].task_id] + [problems[2].task_id] * 2
    for r in rows:
        p = by_id[r["task_id"]]
        assert r["prompt"] == p.prompt and r["chosen"] != r["rejected"]
        assert r["chosen"] in canned[p.prompt] and r["rejected"] in canned[p.prompt]
        # independently re-executed: chosen passes the problem's tests, rejected fails them
        assert run_program(p.program(r["chosen"]), SANDBOX).passed
        assert not run_program(p.program(r["rejected"]), SANDBOX).passed
        assert r["rejected"].strip()  # blank failing samples are never paired


def test_rejected_side_is_drawn_at_random_and_seeded():
    problems = load_humaneval()[:1]
    samples = [{"task_id": problems[0].task_id, "completion": f"s{i}", "passed": i < 20} for i in range(40)]
    draws = {tuple(r["rejected"] for r in pair_solutions(problems, samples, seed)) for seed in range(5)}
    assert len(draws) == 5  # different seeds, different failing partners
    assert pair_solutions(problems, samples, 1) == pair_solutions(problems, samples, 1)
    assert {r["rejected"] for r in pair_solutions(problems, samples, 0)} <= {f"s{i}" for i in range(20, 40)}


def test_pairs_are_cached_by_what_determines_them(tmp_path):
    problems, canned = problems_and_canned()
    gen = CannedGenerator(canned)
    sampling = SamplingConfig(n=4, temperature=1.0)
    path, rows, summary = cached_code_pairs(gen, problems, sampling, cache_dir=tmp_path, model="m", sandbox=SANDBOX)
    assert summary["pairs"] == len(rows) == 3 and summary["problems_with_pass_and_fail"] == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows
    again = cached_code_pairs(gen, problems, sampling, cache_dir=tmp_path, model="m", sandbox=SANDBOX)
    assert again[0] == path and gen.calls == 1  # reused, not regenerated
    other = cached_code_pairs(gen, problems, sampling, cache_dir=tmp_path, model="m", seed=1, sandbox=SANDBOX)
    assert other[0] != path and gen.calls == 2
