"""Generation throughput of each backend on the same model, prompts and sampling settings, side by side.

    sparsepo bench generate [--model smollm2] [--n-prompts 16] [--max-new-tokens 64] [--backends hf vllm ray]
                             [--temperature 1.0] [--n 1] [--batch-size 16] [--ray-replicas 1] [--repeats 3]
                             [--omp sparsepo libgomp passive] [--busy 2] [--check]

Prompts are the first words of Pang & Lee review sentences (paper 3.2's review prefixes). Each backend runs in
a fresh subprocess (so no backend inherits another's threads, memory or engine), first a short warm-up call
that starts its engine ("start s"), then ``--repeats`` identical timed ``generate`` calls over all prompts, of
which the fastest is reported (on a shared machine the others measure the neighbours). tokens/s counts generated
tokens (EOS included, prompt excluded) over that call's wall time; "x hf" is the ratio to HF ``generate``.
With ``--temperature 0`` the table adds how many prompts got exactly HF's greedy text.

On CPU, vLLM pins its worker to all cores but one by default (the last is left to its engine-core loop);
``VLLM_CPU_OMP_THREADS_BIND=0-N`` / ``VLLM_CPU_NUM_OF_RESERVED_CPU`` change that (see sparsepo/generation/vllm.py).

``--omp sparsepo libgomp passive active`` runs each backend once per OpenMP waiting setting (rows ``hf/passive``...):
``sparsepo`` is what importing sparsepo sets (``GOMP_SPINCOUNT=10000``, see ``sparsepo/__init__.py``),
``libgomp`` libgomp's own default (300,000 spins), ``passive``/``active`` ``OMP_WAIT_POLICY``. ``--busy N`` keeps
N busy-looping processes running meanwhile: a stand-in for a machine shared with other jobs, where spinning
OpenMP threads lose their time slices.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import typing
from dataclasses import dataclass
from typing import Literal

from sparsepo.bench.common import (
    ModelConfig,
    add_config_flags,
    busy_neighbours,
    check_models,
    child_command,
    child_extra,
    config_from_args,
    preflight,
)
from sparsepo.config.typed import ConfigError, spec

FALLBACK_PROMPTS = ["the movie was", "i have to say that this film", "the acting in this picture is",
                    "as a fan of the director ,", "this is the kind of film that"]  # fmt: skip


# OpenMP waiting settings of --omp. An OMP_WAIT_POLICY in the environment (even empty, which libgomp ignores)
# keeps sparsepo's import from adding its spin count.
OmpSetting = Literal["sparsepo", "libgomp", "passive", "active"]
OMP_SETTINGS: dict[str, dict[str, str]] = dict(zip(typing.get_args(OmpSetting), (
    {"GOMP_SPINCOUNT": "10000"}, {"OMP_WAIT_POLICY": ""}, {"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"},
), strict=True))
BACKEND_PACKAGES = {"vllm": "vllm", "ray": "ray"}  # backend -> the package it needs (hf: the core install)


def backend_names() -> list[str]:
    """Registered generation backends (``sparsepo.generation``), read when ``--backends`` is checked."""
    from sparsepo.generation import available_backends

    return available_backends()


@dataclass(frozen=True)
class GenerateConfig(ModelConfig):
    n_prompts: int = spec(16, ge=1, help="review-prefix prompts per generate call")
    max_new_tokens: int = spec(64, ge=1)
    backends: tuple[str, ...] = spec(("hf", "vllm", "ray"), choices=backend_names,
                                     help="registered backends (hf, vllm, ray), run in this order")
    temperature: float = spec(1.0, ge=0, help="0: greedy, and the table compares texts with HF's")
    top_p: float = spec(1.0, gt=0, le=1)
    n: int = spec(1, ge=1, help="samples per prompt")
    batch_size: int = spec(16, ge=1, help="HF generate batch size (prompts)")
    ray_replicas: int | None = spec(None, ge=1, help="Ray actors (default: GPUs, or 1)")
    repeats: int = spec(3, ge=1, help="timed calls per backend; the fastest is reported")
    omp: tuple[OmpSetting, ...] = spec((), help="OpenMP waiting settings to compare, one row each (default: as is)")
    busy: int = spec(0, ge=0, help="busy-looping neighbour processes during the runs")


CONFIG = GenerateConfig  # this benchmark's settings (read by gpu_check and tests/test_docs.py)


def review_prefixes(count: int, words: int = 6) -> list[str]:
    """First `words` words of the first `count` Pang & Lee sentences (alternating labels), or fallbacks."""
    try:
        from sparsepo.assets import load_sentences

        rows = load_sentences()
        pos = [r["text"] for r in rows if r["label"] == 1]
        neg = [r["text"] for r in rows if r["label"] == 0]
        texts = [t for pair in zip(pos, neg, strict=False) for t in pair]
    except Exception as err:  # the benchmark must still run on a machine without the corpus
        print(f"(Pang & Lee sentences unavailable: {err}; using built-in prompts)", file=sys.stderr)
        texts = FALLBACK_PROMPTS * (count // len(FALLBACK_PROMPTS) + 1)
    return [" ".join(t.split()[:words]) for t in texts[:count]]


def measure(cfg: GenerateConfig, backend: str) -> dict:
    """Run one backend (in this process) and return its figures and greedy texts."""
    from sparsepo.generation import SamplingConfig, make_generator

    prompts = review_prefixes(cfg.n_prompts)
    sampling = SamplingConfig(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, seed=0)  # fmt: skip
    kw: dict = {}
    if backend == "hf":
        kw["batch_size"] = cfg.batch_size
    if backend == "ray":
        kw["num_replicas"] = cfg.ray_replicas
    gen = make_generator(backend, cfg.model, **kw)
    try:
        start = time.perf_counter()
        gen.generate(prompts[:2], SamplingConfig(n=1, temperature=0, max_new_tokens=4))
        started = time.perf_counter() - start
        times = []
        for _ in range(cfg.repeats):  # same seed each time: identical work, so the fastest run is the least disturbed
            start = time.perf_counter()
            out = gen.generate(prompts, sampling)
            times.append(time.perf_counter() - start)
        seconds = min(times)
    finally:
        gen.close()
    tokens = sum(len(c.token_ids) for completions in out for c in completions)
    return {"backend": backend, "start_s": started, "gen_s": seconds, "tokens": tokens,
            "tok_s": tokens / seconds, "texts": [c[0].text for c in out]}  # fmt: skip


def run_backend(cfg: GenerateConfig, backend: str, omp: str | None = None) -> dict | None:
    """Measure `backend` in a subprocess (with the ``OMP_SETTINGS[omp]`` environment when given); None (with
    its stderr tail printed) if it failed."""
    cmd = child_command("sparsepo.bench.generate", cfg, backend=backend)
    env = None
    if omp:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        env.update(OMP_SETTINGS[omp])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"{backend}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    result = json.loads(lines[-1][len("RESULT "):])
    result["backend"] = f"{backend}/{omp}" if omp else backend
    return result


def table(results: list[dict], greedy: bool) -> str:
    hf = next((r for r in results if r["backend"].split("/")[0] == "hf"), None)
    head = f"{'backend':<12} {'start s':>8} {'gen s':>8} {'tokens':>7} {'tokens/s':>9} {'x hf':>6}"
    head += f" {'same greedy text as hf':>23}" if greedy and hf else ""
    rows = [head, "-" * len(head)]
    for r in results:
        ratio = f"{r['tok_s'] / hf['tok_s']:.2f}" if hf else "-"
        row = f"{r['backend']:<12} {r['start_s']:>8.1f} {r['gen_s']:>8.2f} {r['tokens']:>7d} {r['tok_s']:>9.1f} {ratio:>6}"
        if greedy and hf:
            same = sum(a == b for a, b in zip(r["texts"], hf["texts"], strict=True))
            agree = f"{same}/{len(hf['texts'])}"
            row += f" {agree:>23}"
        rows.append(row)
    return "\n".join(rows)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo bench generate")
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    return add_config_flags(ap, GenerateConfig)


def check(cfg: GenerateConfig) -> list[str]:
    """The model resolves and every backend's package is installed, before any backend process starts."""
    for backend in cfg.backends:
        package = BACKEND_PACKAGES.get(backend)
        if package and importlib.util.find_spec(package) is None:
            rest = " ".join(b for b in cfg.backends if b != backend) or "hf"
            raise ConfigError(f"--backends {backend}: the {package} package is not installed (--backends {rest})")
    return check_models("generate", cfg.model)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(GenerateConfig, args)
    if args.child:  # measure one backend in this process
        print("RESULT " + json.dumps(measure(cfg, child_extra(args)["backend"])), flush=True)
        return 0
    if preflight("generate", args, check(cfg)):
        return 0
    from sparsepo.assets import resolve_model

    print(f"model {resolve_model(cfg.model)}: {cfg.n_prompts} prompts x {cfg.n} samples, max {cfg.max_new_tokens} "
          f"new tokens, temperature {cfg.temperature}, top_p {cfg.top_p}", flush=True)  # fmt: skip
    if cfg.busy:
        print(f"with {cfg.busy} busy-looping neighbour processes", flush=True)
    results = []
    with busy_neighbours(cfg.busy):
        for backend in cfg.backends:
            for policy in cfg.omp or (None,):
                result = run_backend(cfg, backend, policy)
                if result:
                    results.append(result)
                    print(f"  {result['backend']}: {result['tok_s']:.1f} tokens/s", flush=True)
    print(table(results, greedy=cfg.temperature == 0))
    return 0 if results else 1


if __name__ == "__main__":  # vLLM-CPU starts its engine processes with spawn
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
