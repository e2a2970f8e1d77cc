"""``sparsepo frontier``: the sentiment reward-KL frontier (paper 3.2) from the command line.

    sparsepo frontier                                         # offline default: SmolLM2-135M, Pang & Lee, CPU
    ray job submit --working-dir . -- sparsepo frontier --paper --model <sft model> --use-gpu \\
        --storage-path s3://bucket/runs

Every field of ``FrontierConfig`` is a flag (``--betas 0.1 0.5``, ``--eval-tokens 32``, ``--backend vllm``...);
trailing ``key=value`` pairs override the training config of every trial (``optim.grad_accum=4``). Outputs go
to ``<storage-path>/<name>/`` (name: ``frontier-<date>-<time>`` unless ``--name``); ``--resume --name NAME``
continues an interrupted sweep without rerunning finished trials.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from sparsepo.config import ConfigError
from sparsepo.experiments.sentiment.frontier import FrontierConfig, paper_preset, run_frontier
from sparsepo.flags import add_dataclass_flags, dataclass_from_args


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo frontier")
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--paper", action="store_true", help="the paper's setup (GPU cluster); other flags still apply")
    add_dataclass_flags(ap, FrontierConfig, skip=("overrides",))
    ap.add_argument("overrides", nargs="*", help="TrainConfig overrides for every trial, e.g. optim.grad_accum=4")
    return ap


def config_from_args(args: argparse.Namespace) -> FrontierConfig:
    """The experiment's config: defaults, then ``--paper``, then explicit flags; validated."""
    cfg = dataclass_from_args(FrontierConfig, args, overrides=list(args.overrides))
    if args.paper:
        given = {f.name for f in dataclasses.fields(FrontierConfig) if getattr(args, f.name, None) is not None}
        cfg = dataclasses.replace(cfg, **{k: v for k, v in paper_preset().items() if k not in given})
    if cfg.resume and getattr(args, "name", None) is None:
        raise ConfigError("--resume needs the --name of the experiment to continue")
    if getattr(args, "name", None) is None:
        cfg = dataclasses.replace(cfg, name=time.strftime("frontier-%Y%m%d-%H%M%S"))
    return cfg


def run(args: argparse.Namespace) -> int:
    """The ``frontier`` command on parsed ``args``."""
    from sparsepo.logs import quiet_driver

    cfg = config_from_args(args)
    quiet_driver()
    run_frontier(cfg)
    return 0
