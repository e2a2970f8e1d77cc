"""Every benchmark refuses each bad setting with one error line, before it loads a model or starts a process.

Each benchmark's bad command lines run in one fresh interpreter (``sparsepo bench NAME ...``, as a user runs
them), which records per line its exit status, last stderr line, wall time and whether transformers (needed to
load any model) was imported by then. Starting a process is refused in that interpreter (``subprocess.Popen``
raises and records), and once the settings lines are done so is loading a model (``from_pretrained``): a
benchmark that got past its checks would fail with that error instead of its own. The lines that name a model
that does not resolve come last (resolving a model imports transformers), then ``--check`` on a real one.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, json, subprocess, sys, time
started = []

def no_process(self, *a, **k):
    started.append(str(a[0] if a else k.get("args")))
    raise RuntimeError("a process was started")

subprocess.Popen.__init__ = no_process
from sparsepo.cli import main

def no_model(*a, **k):
    raise RuntimeError("a model was loaded")

runs = []
for argv in json.loads(sys.argv[1]):
    if "transformers" in sys.modules:  # from the first model check on: no model may load
        import transformers
        transformers.PreTrainedModel.from_pretrained = classmethod(no_model)
    out, err = io.StringIO(), io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    runs.append({"argv": argv, "code": code, "out": out.getvalue(), "err": (err.getvalue().strip().splitlines() or [""])[-1],
                 "seconds": time.perf_counter() - t, "transformers": "transformers" in sys.modules})
print(json.dumps({"runs": runs, "started": started}))
"""

NO_MODEL = ("--model", "./no-such-model")
MISSING = "model path"  # FileNotFoundError of sparsepo.training.models.model_source

# benchmark -> (flags, what the error line says); settings first, the unresolvable model last
BAD: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "step": [
        (("--steps", "0"), "steps: must be >= 1, got 0"),
        (("--batch-size", "0"), "batch_size: must be >= 1, got 0"),
        (("--max-length", "2"), "max_length: must be >= 4, got 2"),
        (("--chunk", "0"), "chunk: must be >= 1, got 0"),
        (("--methods", "dpo", "dpoo"), "methods[1]: 'dpoo' is not one of"),
        (("--methods", "dpo,sparsepo"), "lists are separate values: --methods dpo sparsepo"),
        (("--ragged", "256", "64"), "--ragged: LO 256 is above HI 64"),
        (("--ragged", "64,256"), "lists are separate values: --ragged 64 256"),
        (("--ragged", "64"), "ragged: expected 2 values, got 1"),
        (("--ragged", "0", "64"), "ragged[0]: must be >= 1, got 0"),
        (("--packing", "two"), "argument --packing: invalid choice: 'two'"),
        (("--fused-head", "yes"), "argument --fused-head: invalid choice: 'yes'"),
        (("--lora", "-1"), "lora: must be >= 0, got -1"),
        (("--lora-ref", "twin"), "argument --lora-ref: invalid choice: 'twin'"),
        (("--strategy", "zero"), "argument --strategy: invalid choice: 'zero'"),
        (("--workers", "0", "--strategy", "ddp"), "workers: must be >= 1, got 0"),
        (("--workers", "2"), "--workers 2 needs --strategy ddp or fsdp"),
        (("--peak-tflops", "0"), "peak_tflops: must be > 0, got 0.0"),
        (("--steps", "x"), "steps: expected a number, got 'x'"),
        (NO_MODEL, MISSING),
    ],
    "vs_trl": [
        (("--steps", "2"), "steps: must be >= 3, got 2"),
        (("--systems", "trl-best", "dpoo"), "systems[1]: 'dpoo' is not one of"),
        (("--systems", "trl-best,dpo"), "lists are separate values: --systems trl-best dpo"),
        (("--workload", "long"), "argument --workload: invalid choice: 'long'"),
        (("--isa", "avx512"), "argument --isa: invalid choice: 'avx512'"),
        (("--repeats", "0"), "repeats: must be >= 1, got 0"),
        (("--pairs", "0"), "pairs: must be >= 1, got 0"),
        (("--batch-size", "0"), "batch_size: must be >= 1, got 0"),
        (("--max-length", "2"), "max_length: must be >= 4, got 2"),
        (("--trl", "padding_free"), "--trl: 'padding_free' is not key=value"),
        (NO_MODEL, MISSING),
        (("--model", "tiny-llama", "--ours", "optim.lrr=1e-5"), "unknown key"),
        (("--model", "tiny-llama", "--trl", "paddin_free=true"), "'paddin_free' is not a DPOConfig field"),
    ],
    "generate": [
        (("--n-prompts", "0"), "n_prompts: must be >= 1, got 0"),
        (("--max-new-tokens", "0"), "max_new_tokens: must be >= 1, got 0"),
        (("--backends", "hf", "vlm"), "backends[1]: 'vlm' is not one of 'hf', 'ray', 'vllm' (did you mean 'vllm'?)"),
        (("--backends", "hf,vllm"), "lists are separate values: --backends hf vllm"),
        (("--temperature", "-1"), "temperature: must be >= 0, got -1.0"),
        (("--top-p", "0"), "top_p: must be > 0, got 0.0"),
        (("--top-p", "1.5"), "top_p: must be <= 1, got 1.5"),
        (("--n", "0"), "n: must be >= 1, got 0"),
        (("--batch-size", "0"), "batch_size: must be >= 1, got 0"),
        (("--ray-replicas", "0"), "ray_replicas: must be >= 1, got 0"),
        (("--repeats", "0"), "repeats: must be >= 1, got 0"),
        (("--omp", "passive", "spinny"), "omp[1]: 'spinny' is not one of 'sparsepo', 'libgomp', 'passive', 'active'"),
        (("--omp", "sparsepo,passive"), "lists are separate values: --omp sparsepo passive"),
        (("--busy", "-1"), "busy: must be >= 0, got -1"),
        (NO_MODEL, MISSING),
    ],
    "profile_step": [
        (("--system", "all"), "argument --system: invalid choice: 'all'"),
        (("--method", "dpoo"), "method: 'dpoo' is not one of"),
        (("--batch-size", "0"), "batch_size: must be >= 1, got 0"),
        (("--max-length", "2"), "max_length: must be >= 4, got 2"),
        (("--workload", "long"), "argument --workload: invalid choice: 'long'"),
        (("--trl-settings", "fast"), "argument --trl-settings: invalid choice: 'fast'"),
        (("--chunk", "0"), "chunk: must be >= 1, got 0"),
        (("--fused-head", "both"), "argument --fused-head: invalid choice: 'both'"),
        (("--rows", "0"), "rows: must be >= 1, got 0"),
        (NO_MODEL, MISSING),
    ],
    "gpu_check": [
        (("--size", "7b"), "argument --size: invalid choice: '7b'"),
        (("--batch-size", "0"), "batch_size: must be >= 1, got 0"),
        (("--max-length", "2"), "max_length: must be >= 4, got 2"),
        (("--steps", "0"), "steps: must be >= 1, got 0"),
        (("--backends", "hf", "vlm"), "backends[1]: 'vlm' is not one of"),
        (("--backends", "hf,vllm"), "lists are separate values: --backends hf vllm"),
        (("--budget-s", "0"), "budget_s: must be > 0, got 0.0"),
    ],
    "mask_init": [
        (("--seeds", "0", "-1"), "seeds[1]: must be >= 0, got -1"),
        (("--seeds", "0,1"), "lists are separate values: --seeds 0 1"),
        (("--texts", "1"), "texts: must be >= 2, got 1"),
        (("--init", "paper", "centered"), "init[1]: 'centered' is not one of 'paper', 'centred' (did you mean 'centred'?)"),
        (("--init", "paper,centred"), "lists are separate values: --init paper centred"),
        (NO_MODEL, MISSING),
    ],
}
CHECK = {name: ("--check", "--model", "tiny-llama") for name in BAD} | {
    "gpu_check": ("--check", "--dry-run"),
    "step": ("--check", "--model", "tiny-llama", "--fused-head", "false", "--ragged", "64", "256", "--no-bf16"),
}


@functools.cache
def probe(name: str) -> dict:
    """The benchmark's bad lines, then its ``--check`` line, in one fresh interpreter."""
    argvs = [["bench", name, *flags] for flags, _ in BAD[name]] + [["bench", name, *CHECK[name]]]
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("name", "case"), [(n, i) for n, cases in BAD.items() for i in range(len(cases))],
                         ids=[f"{n}:{' '.join(flags)}" for n, cases in BAD.items() for flags, _ in cases])
def test_a_bad_setting_is_one_error_line_before_any_model_or_process(name: str, case: int) -> None:
    flags, says = BAD[name][case]
    got = probe(name)
    run = got["runs"][case]
    assert run["code"] == 2, run
    assert run["err"].startswith(("sparsepo: error: ", f"sparsepo bench {name}: error: ")) and says in run["err"], run
    assert got["started"] == [], f"bench {name} started {got['started']}"
    if "--model" not in flags:  # no model can load without transformers
        assert not run["transformers"], f"bench {name} {' '.join(flags)} imported transformers before refusing"


@pytest.mark.parametrize("name", list(BAD))
def test_check_validates_settings_and_models_and_runs_nothing(name: str) -> None:
    got = probe(name)
    run = got["runs"][-1]
    assert run["code"] == 0 and run["err"] == "", run
    assert f"[bench {name}] check passed" in run["out"], run["out"]
    assert got["started"] == []
    if name != "gpu_check":
        assert "--model tiny-llama: resolves" in run["out"]
