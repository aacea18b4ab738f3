"""Options coercion: values from YAML or the command line checked against dataclass field types.

Torch-free, so the config (``ssltk.train.config``) and the objective contract
(``ssltk.objectives``) share one set of rules: ``"true"``/``"no"`` for booleans,
numbers from text, ``"4"`` or ``4`` for text, ``"1,2 3"`` for tuples, unions
tried in order, literals by value. Each error names ``where`` (the key).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from ssltk.errors import UnknownNameError, UsageError

__all__ = ["coerce", "option_fields", "options_dict", "parse_options"]


def coerce(tp: Any, value: Any, where: str) -> Any:
    """``value`` as type ``tp`` (bool, int, float, str, tuple, a union or a Literal); ``UsageError`` naming ``where``."""
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise UsageError(f"{where} must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise UsageError(f"{where} must be a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where} must be {'an integer' if tp is int else 'a number'}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != int(value):
            raise UsageError(f"{where} must be an integer, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads `dt: 4` as a number
        if not isinstance(value, str):
            raise UsageError(f"{where} must be text, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(a, value, where)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, where) for v in value)
        return tuple(value)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise UsageError(f"{where} must be one of {choices}, got {value!r}")
        return value
    return value


def option_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of objective class ``cls``'s ``Options`` dataclass."""
    return list(dataclasses.fields(cls.Options))


def parse_options(cls: type, options: dict[str, Any]) -> Any:
    """Validate and coerce ``options`` for ``cls.Options``; the error names the objective and key."""
    fields = {f.name: f for f in option_fields(cls)}
    hints = typing.get_type_hints(cls.Options)
    kwargs = {}
    for key, value in options.items():
        key_norm = key.replace("-", "_")
        if key_norm not in fields:
            raise UnknownNameError(f"option of objective {cls.name!r}", key, list(fields))
        kwargs[key_norm] = coerce(hints[key_norm], value, f"{cls.name}.{key_norm}")
    try:
        opts = cls.Options(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{cls.name}: {exc}") from None
    check = getattr(opts, "validate", None)
    if callable(check):
        check()
    return opts


def options_dict(options: Any) -> dict[str, Any]:
    """JSON-friendly dict of an Options dataclass (for manifests and listings)."""
    out = {}
    for f in dataclasses.fields(options):
        v = getattr(options, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
