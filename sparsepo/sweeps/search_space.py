"""Search spaces for sweeps: ``dotted.config.key: spec`` mappings (YAML or dict) and their Ray Tune form.

Specs: ``{grid: [...]}``, ``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
``{randint: [lo, hi]}``, a plain constant (or ``{value: x}``), or ``{variants: {name: {dotted.key: value}}}``,
a named bundle of keys forming one categorical axis. Errors name the file and the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sparsepo.config.schema import SECTIONS, TrainConfig, as_number, maybe_number, read_yaml_mapping

SPEC_KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "variants", "value")
DISCRETE = ("grid", "choice", "variants")


def load_space(source: str | Path | dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A YAML file (or mapping) of ``dotted.key: spec`` -> ``{key: {kind: arg}}`` with ``kind`` in SPEC_KINDS.

    Idempotent on its own output. Errors name the file and the key.
    """
    where = "search space"
    if not isinstance(source, dict):
        where = str(source)
        source = read_yaml_mapping(source, "search space")
    if not source:
        raise ValueError(f"{where}: the search space is empty")
    return {str(k): _parse_spec(v, f"{where}: key {k!r}") for k, v in source.items()}


def _parse_spec(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {"value": raw}  # a plain constant (scalar or list)
    if len(raw) != 1 or next(iter(raw)) not in SPEC_KINDS:
        raise ValueError(f"{where}: expected one of {list(SPEC_KINDS)} (or a plain constant), got keys {sorted(raw)}")
    kind, arg = next(iter(raw.items()))
    if kind == "value":
        return {"value": arg}
    if kind in ("grid", "choice"):
        if not isinstance(arg, list) or not arg:
            raise ValueError(f"{where}: '{kind}' needs a non-empty list of values, got {arg!r}")
        return {kind: [maybe_number(v) for v in arg]}
    if kind == "variants":
        if not isinstance(arg, dict) or not arg or not all(isinstance(v, dict) for v in arg.values()):
            raise ValueError(f"{where}: 'variants' needs a mapping of names to mappings of config keys, got {arg!r}")
        return {kind: {str(n): {str(k): maybe_number(v) for k, v in vals.items()} for n, vals in arg.items()}}
    if not isinstance(arg, list) or len(arg) != 2:
        raise ValueError(f"{where}: '{kind}' needs [lo, hi], got {arg!r}")
    lo, hi = (as_number(v, where) for v in arg)
    if not lo < hi:
        raise ValueError(f"{where}: '{kind}' needs lo < hi, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"{where}: 'loguniform' needs 0 < lo, got {lo}")
    if kind == "randint" and not (float(lo).is_integer() and float(hi).is_integer()):
        raise ValueError(f"{where}: 'randint' needs integer bounds [lo, hi), got [{lo}, {hi}]")
    return {kind: [int(lo), int(hi)] if kind == "randint" else [float(lo), float(hi)]}


def check_key(key: str, where: str) -> None:
    """Static check that ``key`` names a TrainConfig field (``loss.*`` names are checked per method later)."""
    top, *rest = key.split(".")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if top not in fields:
        raise ValueError(f"{where}: unknown config key {key!r}; top-level keys: {sorted(fields)}")
    if top == "loss":
        if len(rest) != 1:
            raise ValueError(f"{where}: loss keys are 'loss.<name>', got {key!r}")
    elif top in SECTIONS:
        sub = {f.name: f for f in dataclasses.fields(SECTIONS[top])}
        if not rest or rest[0] not in sub:
            raise ValueError(f"{where}: unknown config key {key!r}; {top} keys: {sorted(sub)}")
        if len(rest) > 1 and "dict" not in str(sub[rest[0]].type):
            raise ValueError(f"{where}: {top}.{rest[0]} is not a mapping; cannot set {key!r}")
    elif rest:
        raise ValueError(f"{where}: {top!r} is not a section; cannot set {key!r}")


def check_space(space: dict[str, dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for key, spec in space.items():
        if key.startswith("_"):
            raise ValueError(f"search space: key {key!r}: names starting with '_' are reserved")
        kind, arg = next(iter(spec.items()))
        keys = sorted({k for vals in arg.values() for k in vals}) if kind == "variants" else [key]
        if kind == "variants" and key.split(".")[0] in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise ValueError(f"search space: variants axis {key!r} must not be named like a config key")
        for k in keys:
            check_key(k, f"search space: key {key!r}")
            if k in seen and seen[k] != key:
                raise ValueError(f"search space: {k!r} is set by both {seen[k]!r} and {key!r}")
            seen[k] = key


def to_tune(spec: dict[str, Any], search: str) -> Any:
    from ray import tune

    kind, arg = next(iter(spec.items()))
    if kind == "value":
        return arg
    if kind in DISCRETE:
        values = list(arg) if kind == "variants" else arg
        return tune.grid_search(values) if search == "grid" else tune.choice(values)
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](*arg)
