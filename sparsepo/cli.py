"""``sparsepo <command>``: the platform's one command line.

Each command lives in the module of its concept and exposes ``build_parser(parser)`` and ``run(args)``;
the scripts in ``tune/``, ``evals/`` and ``bench/`` call the same functions. Commands are imported only when
chosen, and a command's module imports torch, Ray, transformers, pandas and matplotlib only inside the functions
that run it, so every ``--help``, ``--version`` and bad flag is answered before any of them loads
(``tests/sparsepo/test_cli_startup.py``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable

# command -> (module with build_parser/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("sparsepo.training.train", "train one policy with Ray Train (configs/<method>.yaml + key=value overrides)"),
    "sweep": ("sparsepo.sweeps.sweep", "Ray Tune sweep over a training config with a YAML search space"),
    "eval": ("sparsepo.evaluation.cli", "evaluate a model on a suite (sentiment, summarization, code, openllm)"),
    "heatmap": ("sparsepo.analysis.token_values", "token heatmaps of a trained checkpoint (paper Figure 4)"),
    "assets": ("sparsepo.assets", "prepare or locate the offline models and data"),
    "bench": ("sparsepo.bench", "benchmarks: step time per method, vs TRL, generation backends, a profiled step"),
}


def commands() -> dict[str, tuple[str, str]]:
    """Every command: the tools above, then one per registered experiment (``sparsepo.experiments``)."""
    from sparsepo.experiments import EXPERIMENTS

    return {**COMMANDS, **{name: ("sparsepo.experiments.command", exp.help) for name, exp in EXPERIMENTS.items()}}


def _command(name: str) -> tuple[Callable[..., argparse.ArgumentParser], Callable[[argparse.Namespace], int]]:
    """(build_parser, run) of command ``name``; experiments share one module, told which experiment."""
    module = importlib.import_module(commands()[name][0])
    if module.__name__ == "sparsepo.experiments.command":
        return functools.partial(module.build_parser, name), functools.partial(module.run, name)
    return module.build_parser, module.run


def command_parser(name: str) -> argparse.ArgumentParser:
    """The argument parser of command ``name`` (its module is imported here)."""
    parser = argparse.ArgumentParser(prog=f"sparsepo {name}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sparsepo {_version()}")
    return _command(name)[0](parser=parser)


def top_parser() -> argparse.ArgumentParser:
    every = commands()
    width = max(map(len, every))
    listing = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in every.items())
    parser = argparse.ArgumentParser(
        prog="sparsepo",
        description="sparsepo: token-level preference optimisation on Ray.\n\ncommands:\n" + listing,
        epilog="`sparsepo <command> --help` shows each command's flags and their defaults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="sparsepo <command> [flags]",
    )
    parser.add_argument("--version", action="version", version=f"sparsepo {_version()}")
    parser.add_argument("command", choices=list(every), metavar="command", help=argparse.SUPPRESS)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sparsepo")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    from sparsepo.envvars import bound_omp_spin
    from sparsepo.errors import run_cli

    bound_omp_spin()  # before any command imports torch
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in commands():
        top_parser().parse_args(argv[:1] or ["--help"])  # prints help, or the unknown-command error
        return 2
    name, rest = argv[0], argv[1:]
    return run_cli(_command(name)[1], parse(command_parser(name), rest))


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Flags and ``key=value`` overrides in any order (``--resume x optim.lr=1e-5 --check``)."""
    if parser._subparsers is None and not any(a.nargs == argparse.REMAINDER for a in parser._actions):
        # intermixed parsing cannot handle sub-commands (assets prepare|path) or pass-through flags (bench)
        return parser.parse_intermixed_args(argv)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
