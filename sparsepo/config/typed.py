"""Typed, validated configuration: dataclasses whose type hints and field metadata are checked at load time.

Every config of the platform (training, experiments, sweep spaces) is a frozen dataclass. :func:`build` turns a
plain mapping (from YAML, overrides or flags) into one, checking each key against the field's type hint
(``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``, ``tuple[...]``, ``list[...]``,
``dict[...]``, nested dataclasses) and its metadata (:func:`spec`: ranges, dynamic choices such as registered
method names). Errors are :class:`ConfigError`: one line naming the source (file or override) and the dotted key,
with a "did you mean" for unknown keys and choices. Nothing here imports torch, Ray or transformers, so a bad
config fails in well under a second.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal, Union

NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ConfigError(ValueError):
    """A configuration value that is unknown, of the wrong type or out of range; the message names source and key."""


def spec(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",  # noqa: A002 - the argparse word
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    choices: Callable[[], Iterable[str]] | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a help text, a range (``gt``/``ge``/``le``) and/or choices known only at run time
    (``choices`` is called when a value is checked, e.g. the names in a registry)."""
    meta = {"help": help, "gt": gt, "ge": ge, "le": le, "choices": choices}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def suggest(word: str, options: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest option, or ``""``."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def maybe_number(value: Any) -> Any:
    """A string that spells a number becomes that int/float; anything else is returned unchanged.

    YAML 1.1 reads "1e-3" (no dot) as a string; the user meant the number.
    """
    if isinstance(value, str) and NUMBER.match(value.strip()):
        return int(value) if value.strip().lstrip("+-").isdigit() else float(value)
    return value


def as_number(value: Any, where: str) -> int | float:
    """``value`` as a number (see ``maybe_number``), or a ConfigError naming ``where``."""
    value = maybe_number(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return None


def type_name(tp: Any) -> str:
    """A short human name for a type hint (``'int'``, ``"one of 'a', 'b'"``, ``'float or null'``)."""
    if args := _union_args(tp):
        return " or ".join("null" if a is type(None) else type_name(a) for a in args)
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against (and converted to) type hint ``tp``; ConfigError naming ``where`` otherwise."""
    if tp is Any:
        return value
    if args := _union_args(tp):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: X's own message ("expected an integer, got 2.5")
            return convert(value, options[0], where)
        for a in options:
            try:
                return convert(value, a, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {value!r}")
    origin = typing.get_origin(tp)
    if origin is Literal:
        options = typing.get_args(tp)
        if value not in options:
            raise ConfigError(
                f"{where}: {value!r} is not one of {', '.join(map(repr, options))}{suggest(value, map(str, options))}"
            )
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        v = as_number(value, where)
        if isinstance(v, float):
            if not v.is_integer():
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
            v = int(v)
        return v
    if tp is float:
        return float(as_number(value, where))
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin in (tuple, list):
        return _convert_sequence(value, tp, where)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return build(tp, value, where)
    return value


def _convert_sequence(value: Any, tp: Any, where: str) -> tuple | list:
    """``tuple[X, ...]``, ``tuple[X, Y]`` or ``list[X]``; a comma string counts as a list for tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(value, str) and origin is tuple:  # "0.1,0.5" from an override
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return tuple(convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is tuple and args:
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    item = args[0] if args else Any
    return [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]


def check_metadata(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    """Range and run-time choice checks of one field value (``None`` always passes: it means 'not set'); a list
    or tuple value is checked item by item (``methods: tuple[str, ...] = spec(choices=...)``)."""
    if value is None:
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_metadata(item, meta, f"{where}[{i}]")
        return
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ConfigError(f"{where}: must be > {meta['gt']:g}, got {value!r}")
    if meta.get("ge") is not None and not value >= meta["ge"]:
        raise ConfigError(f"{where}: must be >= {meta['ge']:g}, got {value!r}")
    if meta.get("le") is not None and not value <= meta["le"]:
        raise ConfigError(f"{where}: must be <= {meta['le']:g}, got {value!r}")
    if meta.get("choices") is not None:
        options = sorted(meta["choices"]())
        if value not in options:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, options))}{suggest(value, options)}")


def hints(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass (string annotations under ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def build(cls: type, values: dict[str, Any], where: str) -> Any:
    """An instance of dataclass ``cls`` from ``values``; every key and value checked (see module docstring).

    ``where`` prefixes every error: the source and the dotted path of this mapping (``"run.yaml: optim"``).
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in values if k not in fields]
    if unknown:
        k = unknown[0]
        raise ConfigError(f"{_key(where, k)}: unknown key{suggest(k, fields)}; known keys: {', '.join(fields)}")
    tps = hints(cls)
    kwargs = {}
    for name, value in values.items():
        key = _key(where, name)
        kwargs[name] = convert(maybe_number(value) if tps[name] in (int, float) else value, tps[name], key)
        check_metadata(kwargs[name], fields[name].metadata, key)
    return cls(**kwargs)


def _key(where: str, name: str) -> str:
    # "file.yaml" + "optim" -> "file.yaml: optim"; "file.yaml: optim" + "lr" -> "file.yaml: optim.lr"
    return f"{where}.{name}" if ": " in where else f"{where}: {name}"
