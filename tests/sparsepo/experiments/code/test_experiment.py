"""tune/code.py end to end on a tiny model through a local Ray instance: pairs, baseline, a 2-method sweep, Table 2.

The pairs and baseline stages sample from a test double (canonical and broken solutions per problem, registered as
generation backend "canned"), since a random tiny model never passes a test; the sandbox, training, in-training
evaluation (real samples of the tiny policy, which fail) and report are the real code.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sparsepo.evaluation.code import load_humaneval
from sparsepo.experiments.code.experiment import CodeConfig, run_code
from sparsepo.generation import Completion, SamplingConfig, register_backend

TRAIN, EVAL = ["HumanEval/2", "HumanEval/23", "HumanEval/53"], ["HumanEval/13"]
CALLS: list[int] = []


class Canned:
    """Sample j of a problem: its canonical solution for even j, a wrong one for odd j."""

    name = "canned"

    def __init__(self, model: str, **_: object) -> None:
        self.solutions = {p.prompt: p.canonical_solution for p in load_humaneval()}

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        CALLS.append(len(prompts))
        return [[Completion(self.solutions[p] if j % 2 == 0 else "    return None\n", finish_reason="stop")
                 for j in range(sampling.n)] for p in prompts]


@pytest.mark.slow
def test_code_pipeline_writes_table2_with_every_method(local_ray, tmp_path):
    register_backend("canned", Canned)
    cfg = CodeConfig(
        model="tiny-llama", sft_steps=2, sft_data={"suite": "humaneval", "task_ids": ["HumanEval/60", "HumanEval/61"]},
        backend="canned", train={"suite": "humaneval", "task_ids": TRAIN},
        eval_suites={"humaneval": {"suite": "humaneval", "task_ids": EVAL}}, pair_samples=4, methods=("dpo", "sparsepo"),
        steps=2, batch_size=2, lr=1e-4, max_length=256, max_prompt_length=192, eval_n=2, eval_plan=((0.8, (1,)),),
        eval_tokens=8, storage_path=str(tmp_path), name="code",
    )
    logged: list[str] = []
    files = run_code(cfg, log=logged.append)
    sft_policy = next((tmp_path / "sft").glob("code-sft-*/train/checkpoint_*/policy"))  # the SFT stage ran
    assert f"SFT model `{sft_policy}`" in files["report"].read_text()
    table = pd.read_csv(files["table"])
    assert table["Method"].tolist() == ["SFT", "dpo", "sparsepo"]
    assert list(table.columns[1:7]) == [f"{s} pass@{k}" for s in ("HumanEval", "MBPP") for k in (1, 10, 100)]
    assert table.loc[0, "HumanEval pass@1"] == 50.0  # canned baseline: 1 of 2 samples passes
    assert table["HumanEval pass@1"].between(0, 100).all()  # every method was evaluated after training
    assert table[["HumanEval pass@10", "MBPP pass@1"]].isna().all().all()  # not measured: empty, not zero
    pairs = [json.loads(line) for line in next((tmp_path / "pairs").glob("code-pairs-*.jsonl")).read_text().splitlines()]
    assert [p["task_id"] for p in pairs] == TRAIN  # one distinct passing solution per problem -> one pair each
    report = files["report"].read_text()
    assert "| SFT" in report and "| sparsepo" in report and "- pairs: 3" in report
    # The cached stages are not recomputed by a rerun that resumes the sweep.
    calls = len(CALLS)
    logged.clear()
    again = run_code(CodeConfig(**{**cfg.__dict__, "resume": True}), log=logged.append)
    assert len(CALLS) == calls and any(line.startswith("[code] sft: cached") for line in logged)
    pd.testing.assert_frame_equal(pd.read_csv(again["table"]), table)
