"""Hyper-parameters of the preference objectives: one frozen dataclass per registered method, and the one merge.

``register_loss("simpo", beta=2.0, gamma=0.5)`` (``sparsepo.objectives.losses``) derives ``SimpoParams`` from its keyword
defaults (a zoo method's token-weighting parameters included): every field a ``float`` with its range, so a
method's hyper-parameters are declared once, on its registration line. :func:`merge_params` is the only place
where a config's ``loss:`` mapping (or a library caller's keywords) meets those defaults: the config loader, the
preference model and :func:`sparsepo.objectives.losses.preference_loss` all call it through ``losses.loss_params``. Its
errors are one line naming ``loss.<key>`` and the method. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from sparsepo.config.typed import ConfigError, check_metadata, convert, maybe_number, spec, suggest

# Ranges by hyper-parameter name; every other one is >= 0. beta scales every implicit reward: 0 makes it vanish.
BOUNDS: dict[str, dict[str, float]] = {"beta": {"gt": 0}}


def params_class(method: str, defaults: Mapping[str, float]) -> type:
    """The frozen dataclass of ``method``'s hyper-parameters: one ``float`` field per default, with its range."""
    fields = [(k, float, spec(float(v), **BOUNDS.get(k, {"ge": 0}))) for k, v in defaults.items()]
    name = "".join(part.capitalize() for part in method.split("_")) + "Params"
    return dataclasses.make_dataclass(name, fields, frozen=True)


def param_defaults(cls: type) -> dict[str, float]:
    """Field name -> default of a :func:`params_class` dataclass, in declaration order."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


def merge_params(method: str, cls: type, values: Mapping[str, Any] | None, where: str = "loss") -> dict[str, float]:
    """``method``'s defaults (dataclass ``cls``) updated by ``values``, each checked: a known name, a number,
    finite and in range. ``where`` prefixes every error's key (``"run.yaml: loss"`` -> ``run.yaml: loss.beta``)."""
    known = param_defaults(cls)
    takes = ", ".join(f"loss.{k}" for k in known) or "no loss.* key"
    checked: dict[str, float] = {}
    for k, v in (values or {}).items():
        key = f"{where}.{k}"
        if k not in known:
            raise ConfigError(f"{key}: method {method!r} takes no {k!r}{suggest(k, known)}; it takes {takes}")
        try:
            x = convert(maybe_number(v), float, key)
        except ConfigError as err:
            raise ConfigError(f"{err} (method {method!r} takes {takes})") from None
        field = cls.__dataclass_fields__[k]
        if not math.isfinite(x):
            raise ConfigError(f"{key}: must be finite, got {v!r} (method {method!r})")
        try:
            check_metadata(x, field.metadata, key)
        except ConfigError as err:
            raise ConfigError(f"{err} (method {method!r})") from None
        checked[k] = x
    return dataclasses.asdict(cls(**checked))
