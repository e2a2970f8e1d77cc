"""What the benchmarks share: their typed settings and how those are read, checked and handed to a child
process, and one optimizer step of a preference model, as the trainer takes it.

Settings are frozen dataclasses (one per benchmark, built on the bases here), so every flag has a type, a range or
a set of choices and its default in ``--help``. Lists are separate values (``--methods dpo sparsepo``); a comma
list where names or numbers are expected is refused with the space form to use. Every benchmark checks its
settings and resolves its models before it loads one or starts a process; ``--check`` stops there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sparsepo.config.flags import add_dataclass_flags, dataclass_from_args, flag_name, sequence_item
from sparsepo.config.typed import ConfigError, build, hints, spec

if TYPE_CHECKING:
    import torch

CHILD = "--child"  # hidden flag: a child process's settings as JSON (``child_command``)


def loss_names() -> list[str]:
    """Registered methods, read when a value is checked (the registry imports torch; ``--help`` must not)."""
    from sparsepo.objectives.losses import LOSSES

    return list(LOSSES)


@dataclass(frozen=True)
class ModelConfig:
    model: str = spec("smollm2", help="local folder, asset alias (smollm2, tiny-llama) or hub name")


@dataclass(frozen=True)
class PairsConfig(ModelConfig):
    batch_size: int = spec(4, ge=1, help="pairs per optimizer step")


@dataclass(frozen=True)
class OurStepConfig(PairsConfig):
    """Our training step's settings (``bench step``, ``bench profile_step``)."""

    chunk: int = spec(1024, ge=1, help="positions per chunk of the fp32 LM head (run.chunk_size)")
    bf16: bool = spec(True, help="bf16 autocast where the trainer uses it; --no-bf16: optim.bf16=false")
    log_kl: bool = spec(False, help="token KL for methods that only log it (run.log_kl)")
    fused_head: Literal["auto", "true", "false"] = spec("auto", help="run.fused_head")


@dataclass(frozen=True)
class WorkloadConfig(PairsConfig):
    """The conversational pairs of ``bench vs_trl`` and ``bench profile_step`` (``sparsepo.bench.workloads``)."""

    workload: Literal["short", "realistic"] = spec("short", help="one shared short prompt, or distinct 64-256-token ones")
    max_length: int | None = spec(None, ge=4, help="tokens per sequence; default: 128 (short), 640 (realistic)")

    @property
    def length(self) -> int:
        """``max_length``, or the workload's default."""
        return self.max_length or (128 if self.workload == "short" else 640)


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    """``cls``'s flags, ``--check``, and the hidden ``--child`` of a benchmark's child processes."""
    parser.add_argument("--check", action="store_true", help="validate settings and models; load and run nothing")
    add_dataclass_flags(parser, cls)
    parser.add_argument(CHILD, help=argparse.SUPPRESS)
    return parser


def refuse_comma_lists(cls: type, args: argparse.Namespace) -> None:
    """One rule for lists: separate values. An item with a comma where names from a set or numbers are expected
    (``--methods dpo,sparsepo``) is a ConfigError showing the space form; free text (``--ours k=a,b``) passes."""
    tps = hints(cls)
    for f in dataclasses.fields(cls):
        raw = getattr(args, f.name, None)
        item = sequence_item(tps[f.name])
        if not isinstance(raw, list) or (item is str and f.metadata.get("choices") is None):
            continue
        if any("," in str(v) for v in raw):
            spaced = " ".join(p for v in raw for p in str(v).split(",") if p)
            raise ConfigError(f"{flag_name(f.name)}: {' '.join(raw)!r} is a comma list; lists are separate values: "
                              f"{flag_name(f.name)} {spaced}")


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """The benchmark's settings: a child's from ``--child``, else the flags given over the defaults, validated."""
    if getattr(args, "child", None):
        return build(cls, json.loads(args.child)["config"], "child")
    refuse_comma_lists(cls, args)
    return dataclass_from_args(cls, args)


def child_extra(args: argparse.Namespace) -> dict:
    """The per-child values ``child_command`` sent besides the settings (method, system, data path...)."""
    return json.loads(args.child)["extra"] if getattr(args, "child", None) else {}


def child_command(module: str, cfg: Any, **extra: Any) -> list[str]:
    """``python -m module --child JSON``: a child process of a benchmark with ``cfg`` (already validated) and
    ``extra`` values, so a child never re-parses flags built from another process's namespace."""
    payload = {"config": dataclasses.asdict(cfg), "extra": extra}
    return [sys.executable, "-m", module, CHILD, json.dumps(payload)]


def check_models(name: str, *models: str, methods: tuple[str, ...] = (), overrides: tuple[str, ...] = ()) -> list[str]:
    """Each model resolves to a config and a tokenizer and ``overrides`` make a valid TrainConfig (as an
    experiment's ``--check``: :func:`sparsepo.experiments.command.check`); one ``[bench NAME]`` line each."""
    from sparsepo.experiments.command import check

    lines = []
    for model in models:
        lines += check(argparse.Namespace(model=model, methods=list(methods), overrides=list(overrides)))
    return [f"[bench {name}] {line}" for line in lines]


def preflight(name: str, args: argparse.Namespace, lines: list[str]) -> bool:
    """Print the check's lines (on stderr with the progress lines, so stdout stays the benchmark's table; with
    ``--check`` on stdout); True when the run should stop here (``--check``) with exit status 0."""
    for line in lines:
        print(line, file=sys.stdout if args.check else sys.stderr, flush=True)
    if args.check:
        print(f"[bench {name}] check passed: settings and models are valid", flush=True)
    return bool(args.check)


def make_step(model: Any, ref: Any, opt: torch.optim.Optimizer, batch: dict, autocast: Any) -> Callable[[], None]:
    """A closure running forward (reference first, when there is one), backward and ``opt.step()`` on ``batch``."""

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast or contextlib.nullcontext():
            out = model(batch, ref(batch) if ref is not None else None)
            out.loss.backward()
        opt.step()

    return step


def saved_bytes(model: Any, ref: Any, batch: dict, autocast: Any) -> int:
    """Bytes autograd keeps for backward after one forward of ``model`` on ``batch`` (its reference pass
    first): the distinct storages saved by the graph, parameters excepted (they are the same for every method),
    the autocast copies of weights included. Unlike peak RSS, which moves by a tenth of a GiB between identical
    runs with the allocator's reuse of freed memory, this is exact, so a method's saved activations can be
    compared with another's to the MiB."""
    import torch

    params = {getattr(p, "_local_tensor", p).untyped_storage().data_ptr() for p in model.parameters()}  # DTensor: its shard
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast or contextlib.nullcontext():
        out = model(batch, ref(batch) if ref is not None else None)
    del out
    return sum(kept.values())


@contextlib.contextmanager
def busy_neighbours(count: int, seconds: float = 600.0) -> Iterator[None]:
    """``count`` busy-looping processes for the duration of the block (other jobs on a shared machine); each
    also stops by itself after ``seconds``, so none outlives a test or benchmark that was killed. Each runs in
    its own session, as another job would: with the kernel's autogroup scheduling, neighbours sharing the
    caller's session would only compete with the caller's own session for the CPU."""
    loop = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", loop], start_new_session=True) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
