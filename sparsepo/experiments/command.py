"""``sparsepo <experiment>``: one command per registered experiment, its flags generated from its config.

Every field of the experiment's config dataclass is a flag (``--betas 0.1 0.5``, ``--eval-tokens 32``...), shown
with its default; ``--paper`` applies the paper's settings first, and flags given explicitly still win. Trailing
``key=value`` pairs override the training config of every trial (``optim.grad_accum=4``). Outputs go to
``<storage-path>/<name>/`` (name: ``<experiment>-<date>-<time>`` unless ``--name``); ``--resume --name NAME``
continues an interrupted sweep without rerunning finished trials.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
from typing import Any

from sparsepo.config.flags import add_dataclass_flags, dataclass_from_args
from sparsepo.config.typed import ConfigError
from sparsepo.experiments import EXPERIMENTS


def load(spec: str) -> Any:
    """``"module:attribute"`` -> the attribute."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def build_parser(name: str, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    exp = EXPERIMENTS[name]
    ap = parser or argparse.ArgumentParser(prog=f"sparsepo {name}")
    ap.description = f"{exp.help}\n\n    " + exp.usage.replace("\n", "\n    ") + "\n\n" + __doc__.split("\n\n", 1)[1]
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--paper", action="store_true", help="the paper's settings (a GPU cluster); explicit flags still win")
    ap.add_argument("--check", action="store_true", help="validate settings, models and overrides; run nothing")
    # the dataclass's name is for Python callers; the command names each run anew (config_from_args)
    add_dataclass_flags(ap, load(exp.config), skip=("overrides",), shown_defaults={"name": f"{name}-<date>-<time>"})
    ap.add_argument("overrides", nargs="*", help="TrainConfig overrides for every trial, e.g. optim.grad_accum=4")
    return ap


def config_from_args(name: str, args: argparse.Namespace) -> Any:
    """Defaults, then ``--paper``, then the flags given; validated like a config file."""
    exp = EXPERIMENTS[name]
    cls = load(exp.config)
    cfg = dataclass_from_args(cls, args, overrides=list(args.overrides))
    if args.paper:
        given = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
        cfg = dataclasses.replace(load(exp.paper)(cfg), **given)
    if cfg.resume and getattr(args, "name", None) is None:
        raise ConfigError("--resume needs the --name of the experiment to continue")
    if getattr(args, "name", None) is None:
        cfg = dataclasses.replace(cfg, name=time.strftime(f"{name}-%Y%m%d-%H%M%S"))
    return cfg


def check(cfg: Any) -> list[str]:
    """What every experiment shares, checked before any stage samples, trains or starts Ray: its methods are
    registered, its training overrides make a valid TrainConfig (both without torch, so a typo fails at once),
    and its models (``model``, ``ref``) resolve to a tokenizer and a model config. Returns one line per finding;
    raises ConfigError / OSError otherwise."""
    from sparsepo.config.schema import apply_overrides, from_dict
    from sparsepo.objectives.losses import LOSSES

    methods = list(getattr(cfg, "methods", ()))
    unknown = [m for m in methods if m not in LOSSES]
    if unknown:
        raise ConfigError(f"--methods: {unknown} not registered ({', '.join(sorted(LOSSES))})")
    values = apply_overrides({"method": methods[0] if methods else "dpo"}, list(getattr(cfg, "overrides", ())))
    from_dict(values, where="overrides")

    from sparsepo.training.models import check_model

    return [check_model(f"--{flag}", name) for flag in ("model", "ref") if (name := getattr(cfg, flag, None))]


def run(name: str, args: argparse.Namespace) -> int:
    from sparsepo.logs import quiet_driver

    cfg = config_from_args(name, args)
    for line in check(cfg):  # before any stage: a bad model or override fails here, not after the first stage
        print(f"[{name}] {line}", flush=True)
    if args.check:
        print(f"[{name}] check passed: settings, models and overrides are valid", flush=True)
        return 0
    # Progress lines must reach `ray job logs` / a piped terminal as each stage ends, not when a buffer fills.
    if hasattr(sys.stdout, "reconfigure"):  # not on a test's StringIO
        sys.stdout.reconfigure(line_buffering=True)
    quiet_driver()
    load(EXPERIMENTS[name].run)(cfg)
    return 0
