"""Typed config machinery (sparsepo.config.typed) and the flags generated from it (sparsepo.config.flags)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from sparsepo.config.flags import (
    KeyRow,
    add_dataclass_flags,
    dataclass_from_args,
    field_help,
    key_rows,
    keys_help,
)
from sparsepo.config.typed import ConfigError, build, spec

NAMES = ["alpha", "beta"]


@dataclass(frozen=True)
class Inner:
    depth: Literal[1, 2] = 1
    kind: str = spec("alpha", choices=lambda: NAMES)


@dataclass(frozen=True)
class Outer:
    lr: float = spec(1e-3, gt=0)  # learning rate
    steps: int | None = spec(None, ge=1)
    betas: tuple[float, ...] = (0.1, 0.5)
    pair: tuple[float, float] = (0.9, 0.99)
    mode: Literal["fast", "exact"] = "fast"
    flag: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


def test_values_are_converted_to_their_types():
    got = build(Outer, {"lr": "1e-4", "steps": 3.0, "betas": [1, "2"], "pair": "0.8,0.9", "inner": {"depth": 2}}, "f.yaml")
    assert got.lr == 1e-4 and isinstance(got.lr, float)
    assert got.steps == 3 and isinstance(got.steps, int)
    assert got.betas == (1.0, 2.0) and got.pair == (0.8, 0.9) and got.inner == Inner(depth=2)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lrr": 1}, "f.yaml: lrr: unknown key (did you mean 'lr'?); known keys: lr, steps"),
        ({"lr": 0}, "f.yaml: lr: must be > 0, got 0.0"),
        ({"lr": "fast"}, "f.yaml: lr: expected a number, got 'fast'"),
        ({"steps": 2.5}, "f.yaml: steps: expected an integer, got 2.5"),
        ({"steps": 0}, "f.yaml: steps: must be >= 1, got 0"),
        ({"pair": [1]}, "f.yaml: pair: expected 2 values, got 1"),
        ({"betas": [0.1, "x"]}, "f.yaml: betas[1]: expected a number, got 'x'"),
        ({"mode": "exakt"}, "f.yaml: mode: 'exakt' is not one of 'fast', 'exact' (did you mean 'exact'?)"),
        ({"flag": "yes"}, "f.yaml: flag: expected true or false, got 'yes'"),
        ({"extra": 3}, "f.yaml: extra: expected a mapping, got 3"),
        ({"inner": {"depth": 3}}, "f.yaml: inner.depth: 3 is not one of 1, 2"),
        ({"inner": {"kind": "gamma"}}, "f.yaml: inner.kind: 'gamma' is not one of 'alpha', 'beta'"),
        ({"inner": {"knd": "alpha"}}, "f.yaml: inner.knd: unknown key (did you mean 'kind'?)"),
    ],
)
def test_errors_name_source_and_dotted_key(values, message):
    with pytest.raises(ConfigError) as err:
        build(Outer, values, "f.yaml")
    assert message in str(err.value)


def test_run_time_choices_follow_the_registry(monkeypatch):
    monkeypatch.setattr(f"{__name__}.NAMES", [*NAMES, "gamma"])
    assert build(Outer, {"inner": {"kind": "gamma"}}, "f").inner.kind == "gamma"


def parse(*argv: str) -> Outer:
    ap = argparse.ArgumentParser()
    add_dataclass_flags(ap, Outer, skip=("inner",))
    return dataclass_from_args(Outer, ap.parse_args(list(argv)))


def test_flags_cover_every_field_and_keep_defaults():
    assert parse() == Outer()
    got = parse("--lr", "0.01", "--betas", "0.2", "0.3", "--flag", "--mode", "exact", "--extra", "a=1", "b=x")
    assert got == Outer(lr=0.01, betas=(0.2, 0.3), flag=True, mode="exact", extra={"a": 1, "b": "x"})
    assert parse("--flag", "--no-flag").flag is False


def test_flag_help_shows_comment_type_and_default(capsys):
    ap = argparse.ArgumentParser()
    add_dataclass_flags(ap, Outer, skip=("inner",))
    help_text = " ".join(ap.format_help().split())
    assert "--lr LR learning rate [float; default: 0.001]" in help_text
    assert "--betas BETAS [BETAS ...] [tuple; default: 0.1 0.5]" in help_text
    assert field_help(Outer)["lr"] == "learning rate"


def test_flag_values_are_validated_like_a_config_file():
    with pytest.raises(ConfigError, match=r"flags: lr: must be > 0, got -1.0"):
        parse("--lr", "-1")
    with pytest.raises(SystemExit):  # argparse itself refuses a Literal outside its choices
        parse("--mode", "slow")


@dataclass(frozen=True)
class Command:
    target: str  # what to act on (no default: a required flag)
    count: int = spec(3, ge=1)
    modes: tuple[Literal["min", "max"], ...] = ("max",)
    scheduler: Literal["asha"] | None = None


def command_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    add_dataclass_flags(ap, Command, aliases={"count": ("-c",)})
    return ap


def test_flags_choices_inside_optional_and_tuple_required_fields_and_aliases(capsys):
    ap = command_parser()
    got = dataclass_from_args(Command, ap.parse_args(["--target", "x", "-c", "2", "--modes", "min", "max"]))
    assert got == Command(target="x", count=2, modes=("min", "max"))
    help_text = " ".join(ap.format_help().split())
    assert "--count COUNT, -c COUNT [int; default: 3]" in help_text and "--target TARGET what to act on (no default: a required flag) [str; required]" in help_text
    assert "--modes {min,max} [{min,max} ...]" in help_text and "--scheduler {asha}" in help_text
    for bad in (["--count", "1"], ["--target", "x", "--scheduler", "pbt"]):
        with pytest.raises(SystemExit):
            ap.parse_args(bad)
    with pytest.raises(ConfigError, match=r"modes\[0\]: 'mid' is not one of 'min', 'max' \(did you mean 'min'\?\)"):
        dataclass_from_args(Command, ap.parse_args(["--target", "x", "--modes", "mid"]))
    assert "required: --target" in capsys.readouterr().err


@dataclass(frozen=True)
class Section:
    """What the section holds.

    Details that stay out of the listing."""

    ratio: float = spec(0.5, ge=0, le=1)  # a share
    auto: bool | Literal["auto"] = "auto"


@dataclass(frozen=True)
class Listed:
    lr: float = spec(1e-3, gt=0)  # learning rate
    name: str | None = None
    kind: str = spec("alpha", choices=lambda: NAMES)
    pair: tuple[float, float] = (0.9, 0.99)
    sec: Section = field(default_factory=Section)


def test_key_rows_give_dotted_keys_with_type_range_default_and_choices():
    assert key_rows(Listed) == [
        KeyRow("lr", "float > 0", "0.001", (), "learning rate"),
        KeyRow("name", "str or null", "null", (), ""),
        KeyRow("kind", "str", "alpha", ("alpha", "beta"), ""),  # a registry's names, read when listed
        KeyRow("pair", "list", "[0.9, 0.99]", (), ""),
        KeyRow("sec.ratio", "float in [0, 1]", "0.5", (), "a share"),
        KeyRow("sec.auto", "bool or str", "auto", ("true", "false", "auto"), ""),
    ]
    text = keys_help(Listed)
    assert "\n  sec: What the section holds.\n" in text and "Details" not in text
    assert "  lr         float > 0        0.001\n      learning rate\n" in text
    assert "  sec.auto   bool or str      auto  [true, false, auto]" in text


def test_a_union_with_choices_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"sec.auto: expected bool or one of 'auto', got 'aut' \(did you mean 'auto'\?\)"):
        build(Listed, {"sec": {"auto": "aut"}}, "f.yaml")


@dataclass(frozen=True)
class Lists:
    names: tuple[str, ...] = spec(("a",), choices=lambda: ["a", "b"])
    sizes: tuple[int, ...] = spec((1,), ge=1)
    modes: tuple[Literal["x", "y"], ...] = ("x",)


def test_list_fields_check_ranges_and_choices_item_by_item_and_usage_lists_literal_choices():
    assert build(Lists, {"names": ["b", "a"], "sizes": [3, 1]}, "f").names == ("b", "a")
    with pytest.raises(ConfigError, match=r"^f: names\[1\]: 'c' is not one of 'a', 'b'$"):
        build(Lists, {"names": ["a", "c"]}, "f")
    with pytest.raises(ConfigError, match=r"^f: sizes\[0\]: must be >= 1, got 0$"):
        build(Lists, {"sizes": [0, 2]}, "f")
    ap = argparse.ArgumentParser()
    add_dataclass_flags(ap, Lists)
    assert "--modes {x,y} [{x,y} ...]" in ap.format_usage()
    with pytest.raises(ConfigError, match=r"modes\[1\]: 'z' is not one of 'x', 'y'"):
        dataclass_from_args(Lists, ap.parse_args(["--modes", "x", "z"]))


@dataclass(frozen=True)
class Words:
    head: Literal["auto", "true", "false"] = "auto"
    words: tuple[str, ...] = ()


def test_string_choices_and_string_lists_are_not_read_as_yaml():
    ap = argparse.ArgumentParser()
    add_dataclass_flags(ap, Words)
    got = dataclass_from_args(Words, ap.parse_args(["--head", "false", "--words", "no", "null", "1"]))
    assert got == Words(head="false", words=("no", "null", "1"))
