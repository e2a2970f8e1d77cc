"""Generation throughput of each backend on the same model, prompts and sampling settings, side by side.

    sparsepo bench generate [--model smollm2] [--n-prompts 16] [--max-new-tokens 64] [--backends hf,vllm,ray]
                             [--temperature 1.0] [--n 1] [--batch-size 16] [--ray-replicas 1] [--repeats 3]
                             [--omp sparsepo,libgomp,passive] [--busy 2]

Prompts are the first words of Pang & Lee review sentences (paper 3.2's review prefixes). Each backend runs in
a fresh subprocess (so no backend inherits another's threads, memory or engine), first a short warm-up call
that starts its engine ("start s"), then ``--repeats`` identical timed ``generate`` calls over all prompts, of
which the fastest is reported (on a shared machine the others measure the neighbours). tokens/s counts generated
tokens (EOS included, prompt excluded) over that call's wall time; "x hf" is the ratio to HF ``generate``.
With ``--temperature 0`` the table adds how many prompts got exactly HF's greedy text.

On CPU, vLLM pins its worker to all cores but one by default (the last is left to its engine-core loop);
``VLLM_CPU_OMP_THREADS_BIND=0-N`` / ``VLLM_CPU_NUM_OF_RESERVED_CPU`` change that (see sparsepo/generation/vllm.py).

``--omp sparsepo,libgomp,passive,active`` runs each backend once per OpenMP waiting setting (rows ``hf/passive``...):
``sparsepo`` is what importing sparsepo sets (``GOMP_SPINCOUNT=10000``, see ``sparsepo/__init__.py``),
``libgomp`` libgomp's own default (300,000 spins), ``passive``/``active`` ``OMP_WAIT_POLICY``. ``--busy N`` keeps
N busy-looping processes running meanwhile: a stand-in for a machine shared with other jobs, where spinning
OpenMP threads lose their time slices.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

FALLBACK_PROMPTS = ["the movie was", "i have to say that this film", "the acting in this picture is",
                    "as a fan of the director ,", "this is the kind of film that"]  # fmt: skip


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


def measure(args: argparse.Namespace) -> dict:
    """Run one backend (in this process) and return its figures and greedy texts."""
    from sparsepo.generation import SamplingConfig, make_generator

    prompts = review_prefixes(args.n_prompts)
    sampling = SamplingConfig(n=args.n, temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=0)  # fmt: skip
    kw: dict = {}
    if args.one == "hf":
        kw["batch_size"] = args.batch_size
    if args.one == "ray":
        kw["num_replicas"] = args.ray_replicas
    gen = make_generator(args.one, args.model, **kw)
    try:
        start = time.perf_counter()
        gen.generate(prompts[:2], SamplingConfig(n=1, temperature=0, max_new_tokens=4))
        started = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):  # same seed each time: identical work, so the fastest run is the least disturbed
            start = time.perf_counter()
            out = gen.generate(prompts, sampling)
            times.append(time.perf_counter() - start)
        seconds = min(times)
    finally:
        gen.close()
    tokens = sum(len(c.token_ids) for completions in out for c in completions)
    return {"backend": args.one, "start_s": started, "gen_s": seconds, "tokens": tokens,
            "tok_s": tokens / seconds, "texts": [c[0].text for c in out]}  # fmt: skip


# OpenMP waiting settings of --omp. An OMP_WAIT_POLICY in the environment (even empty, which libgomp ignores)
# keeps sparsepo's import from adding its spin count.
OMP_SETTINGS: dict[str, dict[str, str]] = {
    "sparsepo": {"GOMP_SPINCOUNT": "10000"},
    "libgomp": {"OMP_WAIT_POLICY": ""},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
}


def run_backend(backend: str, argv: list[str], omp: str | None = None) -> dict | None:
    """Measure `backend` in a subprocess (with the ``OMP_SETTINGS[omp]`` environment when given); None (with
    its stderr tail printed) if it failed."""
    cmd = [sys.executable, "-m", "sparsepo.bench.generate", *argv, "--one", backend]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2", help="local folder, asset alias (smollm2, tiny-llama) or hub name")
    parser.add_argument("--n-prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--backends", default="hf,vllm,ray", help="comma-separated, run in this order")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--n", type=int, default=1, help="samples per prompt")
    parser.add_argument("--batch-size", type=int, default=16, help="HF generate batch size (prompts)")
    parser.add_argument("--ray-replicas", type=int, default=None, help="Ray actors (default: GPUs, or 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per backend; the fastest is reported")
    parser.add_argument("--omp", default="", help=f"comma-separated OpenMP waiting settings to compare: {', '.join(OMP_SETTINGS)}")
    parser.add_argument("--busy", type=int, default=0, help="busy-looping neighbour processes during the runs")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one backend in this process
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return 0
    own = list(sys.argv[1:] if argv is None else argv)
    from sparsepo.assets import resolve_model

    print(f"model {resolve_model(args.model)}: {args.n_prompts} prompts x {args.n} samples, max {args.max_new_tokens} "
          f"new tokens, temperature {args.temperature}, top_p {args.top_p}", flush=True)  # fmt: skip
    if args.busy:
        print(f"with {args.busy} busy-looping neighbour processes", flush=True)
    results = []
    policies = [p.strip() for p in args.omp.split(",") if p.strip()] or [None]
    unknown = [p for p in policies if p and p not in OMP_SETTINGS]
    if unknown:
        parser.error(f"--omp: unknown setting(s) {unknown}; choose from {', '.join(OMP_SETTINGS)}")
    from sparsepo.bench.common import busy_neighbours

    with busy_neighbours(args.busy):
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            for policy in policies:
                result = run_backend(backend, own, policy)
                if result:
                    results.append(result)
                    print(f"  {result['backend']}: {result['tok_s']:.1f} tokens/s", flush=True)
    print(table(results, greedy=args.temperature == 0))
    return 0 if results else 1


if __name__ == "__main__":  # vLLM-CPU starts its engine processes with spawn
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
