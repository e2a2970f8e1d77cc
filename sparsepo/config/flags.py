"""Command-line flags generated from a config dataclass, so every field is settable and help shows defaults.

``add_dataclass_flags(parser, FrontierConfig)`` adds ``--field-name`` for each field: numbers and strings take
one value, tuples and lists take several (``--betas 0.1 0.5``), booleans are ``--x`` / ``--no-x``, mappings take
``key=value`` pairs. A field's help is its ``spec(help=...)`` or the ``# comment`` on its line in the source.
A ``Literal`` field (also inside ``X | None`` or ``tuple[...]``) lists its choices; a field without a default
is a required flag; ``aliases`` adds short spellings (``{"n": ("-n",)}``).
:func:`dataclass_from_args` validates the parsed values with :func:`sparsepo.config.typed.build`, so a flag's
errors read like a config file's (``--betas: expected a number, got 'x'``).

:func:`keys_help` lists a config dataclass the other way: every dotted key (nested dataclasses as sections) with
its type, default, choices and help, for the ``--help`` of a command that takes ``section.key=value`` overrides.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import textwrap
import types
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


def _unwrap_optional(tp: Any) -> Any:
    """``X`` of ``X | None`` (the first option of a union with None); any other hint unchanged."""
    args = typing.get_args(tp)
    if type(None) in args:
        return next(a for a in args if a is not type(None))
    return tp


def _is_sequence(tp: Any) -> bool:
    return typing.get_origin(_unwrap_optional(tp)) in (tuple, list)


def _is_text(tp: Any) -> bool:
    """A ``str`` field or a ``Literal`` of strings (also inside ``X | None`` or a tuple/list): its flag values are
    kept as typed, not read as YAML (``--system 2024`` stays a string, ``--fused-head false`` is the choice 'false')."""
    tp = sequence_item(tp) if _is_sequence(tp) else _unwrap_optional(tp)
    literal = typing.get_origin(tp) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(tp))
    return tp is str or literal


def _choices(tp: Any) -> list[Any] | None:
    """The values of a ``Literal`` hint, also inside ``X | None``; else None. A list of Literals gets no argparse
    choices (its usage still lists them): the typed check names the item, suggests the closest and explains a
    comma list."""
    args = [tp]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and typing.get_origin(args[0]) is typing.Literal:
        return list(typing.get_args(args[0]))
    return None


def sequence_item(tp: Any) -> Any:
    """The item type of a list or tuple hint (``tuple[int, ...]``, ``tuple[int, int] | None``: ``int``)."""
    return next(iter(typing.get_args(_unwrap_optional(tp))), Any)


def _default_text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return " ".join(map(str, value)) or "(none)"
    return "(none)" if value is None else str(value)


def add_dataclass_flags(
    parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), aliases: dict[str, tuple[str, ...]] | None = None,
    shown_defaults: dict[str, str] | None = None,
) -> None:
    """One flag per field of dataclass ``cls`` (except ``skip``); parsed values land under the field's name
    and are left ``None`` when not given, so the dataclass default applies (see :func:`dataclass_from_args`).
    ``aliases``: field name -> extra option strings of its flag (``{"n": ("-n",)}``); ``shown_defaults``: field
    name -> the default ``--help`` shows where the command, not the dataclass, fills it in."""
    helps = field_help(cls)
    tps = hints(cls)
    groups: dict[str, Any] = {}  # spec(group=...) -> its --help section, in order of first use
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        group = f.metadata.get("group")
        if group and group not in groups:
            groups[group] = parser.add_argument_group(group)
        target = groups[group] if group else parser
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
        if (choices := _choices(tp)) is not None:
            kwargs["choices"] = choices
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        shown = "required" if required else f"default: {(shown_defaults or {}).get(f.name) or _default_text(default)}"
        kwargs.update(required=required, help=f"{text}[{type_name(tp)}; {shown}]".replace("%", "%%"))
        target.add_argument(flag_name(f.name), *(aliases or {}).get(f.name, ()), **kwargs)


def _parse_mapping(items: list[str], flag: str) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{flag}: expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(raw)
    return out


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
        elif _is_text(tps[f.name]):
            pass
        elif isinstance(raw, list):
            raw = [yaml.safe_load(v) if isinstance(v, str) else v for v in raw]
        elif isinstance(raw, str):
            raw = yaml.safe_load(raw)
        values[f.name] = raw
    values.update(fixed)
    return build(cls, values, "flags")


# ------------------------------------------------------------------------------------- keys of a config file


@dataclasses.dataclass(frozen=True)
class KeyRow:
    """One settable key of a config dataclass, as ``--help`` lists it."""

    key: str  # dotted: section.name
    type: str  # "int", "float or null", "str" (with choices)...
    default: str  # as YAML spells it (null, true, [0.9, 0.999])
    choices: tuple[str, ...]  # a Literal's values or a spec(choices=...) registry's names; () = free
    help: str


def yaml_text(value: Any) -> str:
    """``value`` as it is written in a YAML config or a ``key=value`` override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(map(yaml_text, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_text(v)}" for k, v in value.items()) + "}"
    if value == "":
        return '""'
    return str(value)


def _value_type(tp: Any) -> tuple[str, tuple[Any, ...]]:
    """(type text, Literal values) of a type hint: a Literal reads as its values' type plus its values."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Literal:
        return " or ".join(dict.fromkeys(type(a).__name__ for a in args)), args
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        parts = [_value_type(a) for a in args]
        values = tuple(c for p in parts for c in p[1])
        if values and bool in args:  # bool | Literal["auto"]: every value is a choice
            values = (True, False, *values)
        return " or ".join(dict.fromkeys(p[0] for p in parts)), values
    if typing.get_origin(tp) is dict or tp is dict:
        return "mapping", ()
    if typing.get_origin(tp) in (tuple, list):
        return "list", ()
    return "null" if tp is type(None) else type_name(tp), ()


def _range_text(meta: typing.Mapping[str, Any]) -> str:
    """`` >= 1``, `` > 0``, `` in [0, 1]`` from a field's :func:`sparsepo.config.typed.spec` range; ``""`` if none."""
    gt, ge, le = meta.get("gt"), meta.get("ge"), meta.get("le")
    low = ("(", ">", gt) if gt is not None else ("[", ">=", ge) if ge is not None else None
    if low and le is not None:
        return f" in {low[0]}{low[2]:g}, {le:g}]"
    if low:
        return f" {low[1]} {low[2]:g}"
    return f" <= {le:g}" if le is not None else ""


def key_rows(cls: type, prefix: str = "") -> list[KeyRow]:
    """Every key of dataclass ``cls``, fields of nested dataclasses under their section (``optim.lr``). A
    ``spec(choices=...)`` callable is called: it must not load heavy libraries (``--help`` waits for it)."""
    helps, tps, rows = field_help(cls), hints(cls), []
    for f in dataclasses.fields(cls):
        tp = tps[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            rows += key_rows(tp, f"{prefix}{f.name}.")
            continue
        text, values = _value_type(tp)
        text += _range_text(f.metadata)
        choices = f.metadata.get("choices")
        names = tuple(sorted(map(str, choices()))) if choices is not None else tuple(map(yaml_text, values))
        rows.append(KeyRow(prefix + f.name, text, yaml_text(field_default(f)), names, helps[f.name]))
    return rows


def section_docs(cls: type) -> dict[str, str]:
    """Section name -> the first paragraph of its dataclass's docstring (none for an undocumented one)."""
    out, tps = {}, hints(cls)
    for f in dataclasses.fields(cls):
        tp = tps[f.name]
        doc = (tp.__doc__ or "") if isinstance(tp, type) and dataclasses.is_dataclass(tp) else ""
        if doc and not doc.startswith(f"{tp.__name__}("):  # dataclass's generated signature: no docstring
            out[f.name] = " ".join(inspect.cleandoc(doc).split("\n\n")[0].replace("``", "").split())
    return out


def keys_help(cls: type, width: int = 110) -> str:
    """The keys of config dataclass ``cls`` as a ``--help`` epilog: ``key  type  default  [choices]``, its help
    wrapped below, and each section's description before its first key."""
    rows, docs = key_rows(cls), section_docs(cls)
    kw = max(len(r.key) for r in rows)
    tw = max(len(r.type) for r in rows)
    wrap = textwrap.TextWrapper(width=width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    lines, section = [f"  {'key':<{kw}}  {'type':<{tw}}  default  [choices]"], None
    for r in rows:
        head = r.key.partition(".")[0] if "." in r.key else None
        if head != section and head is not None:
            lines += ["", *textwrap.wrap(f"{head}: {docs[head]}" if head in docs else head, width=width,
                                         initial_indent="  ", subsequent_indent="    ")]
        section = head
        first = f"  {r.key:<{kw}}  {r.type:<{tw}}  {r.default}" + (f"  [{', '.join(r.choices)}]" if r.choices else "")
        lines += textwrap.wrap(first, width=width, subsequent_indent=" " * (kw + tw + 6), break_on_hyphens=False)
        if r.help:
            lines += wrap.wrap(r.help)
    return "\n".join(lines)
