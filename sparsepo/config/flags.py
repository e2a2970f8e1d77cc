"""Command-line flags generated from a config dataclass, so every field is settable and help shows defaults.

``add_dataclass_flags(parser, FrontierConfig)`` adds ``--field-name`` for each field: numbers and strings take
one value, tuples and lists take several (``--betas 0.1 0.5``), booleans are ``--x`` / ``--no-x``, mappings take
``key=value`` pairs. A field's help is its ``spec(help=...)`` or the ``# comment`` on its line in the source.
:func:`dataclass_from_args` validates the parsed values with :func:`sparsepo.config.typed.build`, so a flag's
errors read like a config file's (``--betas: expected a number, got 'x'``).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from typing import Any

from sparsepo.config.typed import build, hints, type_name

_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")


def field_help(cls: type) -> dict[str, str]:
    """Field name -> help text: ``spec(help=...)`` metadata, else the trailing ``# comment`` of its source line."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = ""
    comments = {m.group(1): m.group(2).strip() for line in source.splitlines() if (m := _COMMENT.match(line))}
    return {f.name: f.metadata.get("help") or comments.get(f.name, "") for f in dataclasses.fields(cls)}


def field_default(f: dataclasses.Field) -> Any:
    """A field's default without instantiating its dataclass: ``__post_init__`` checks may import torch or read
    registries, which ``--help`` and a bad flag must not wait for."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _is_sequence(tp: Any) -> bool:
    args = typing.get_args(tp)
    if type(None) in args:
        tp = next(a for a in args if a is not type(None))
    return typing.get_origin(tp) in (tuple, list)


def sequence_item(tp: Any) -> Any:
    """The item type of a list or tuple hint (``tuple[int, ...]``, ``tuple[int, int] | None``: ``int``)."""
    args = typing.get_args(tp)
    if type(None) in args:
        tp = next(a for a in args if a is not type(None))
    return next(iter(typing.get_args(tp)), Any)


def _default_text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return " ".join(map(str, value)) or "(none)"
    return "(none)" if value is None else str(value)


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of dataclass ``cls`` (except ``skip``); parsed values land under the field's name
    and are left ``None`` when not given, so the dataclass default applies (see :func:`dataclass_from_args`)."""
    helps = field_help(cls)
    tps = hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, default = tps[f.name], field_default(f)
        text = f"{helps[f.name]} " if helps[f.name] else ""
        kwargs: dict[str, Any] = {"dest": f.name, "default": None}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is dict:
            kwargs.update(nargs="+", metavar="KEY=VALUE")
        elif _is_sequence(tp):
            kwargs["nargs"] = "+"
            if typing.get_origin(item := sequence_item(tp)) is typing.Literal:  # usage lists the choices
                kwargs["metavar"] = "{" + ",".join(map(str, typing.get_args(item))) + "}"
        if typing.get_origin(tp) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(tp))
        kwargs["help"] = f"{text}[{type_name(tp)}; default: {_default_text(default)}]".replace("%", "%%")
        parser.add_argument(flag_name(f.name), **kwargs)


def _parse_mapping(items: list[str], flag: str) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{flag}: expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(raw)
    return out


def _is_text(tp: Any) -> bool:
    """Strings as typed, never read as YAML: ``str`` and a ``Literal`` of strings (``--fused-head false`` is the
    choice 'false', not the boolean)."""
    literal = typing.get_origin(tp) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(tp))
    return tp is str or literal


def dataclass_from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """An instance of ``cls`` from the flags given on the command line (others keep their defaults) plus
    ``fixed`` values; values are parsed as YAML scalars and validated like a config file."""
    import yaml

    tps = hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw = getattr(args, f.name, None)
        if raw is None:
            continue
        if typing.get_origin(tps[f.name]) is dict:
            raw = _parse_mapping(raw, flag_name(f.name))
        elif isinstance(raw, list):
            text = _is_text(sequence_item(tps[f.name]))
            raw = [yaml.safe_load(v) if isinstance(v, str) and not text else v for v in raw]
        elif isinstance(raw, str) and not _is_text(tps[f.name]):
            raw = yaml.safe_load(raw)
        values[f.name] = raw
    values.update(fixed)
    return build(cls, values, "flags")
