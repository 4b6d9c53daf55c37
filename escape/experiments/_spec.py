"""Value types of config keys: small checkers that return the value, normalised, or raise a one-line
ConfigError naming the key (``Integer``, ``Number``, ``String``, ``ListOf``, ...)."""

import dataclasses
import json
import math
import numbers
from collections.abc import Callable
from typing import Any

from .._checks import suggest
from ._config import ConfigError


def show(value) -> str:
    """A value as TOML writes it (``true``, ``"1500"``, ``[1, 2]``), for messages."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _fail(where: str, what: str, value) -> None:
    raise ConfigError(f"config: {where} must be {what}, got {show(value)}")


# ------------------------------------------------------------------------------------------------ value types


class Spec:
    """A value type: ``check`` returns the (normalised) value or raises ConfigError naming ``where``."""

    def check(self, where: str, value):
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _bound_text(low, high, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


@dataclasses.dataclass(frozen=True)
class Integer(Spec):
    """An integer (not a bool), optionally ``>= min`` and ``<= max``."""

    min: int | None = None
    max: int | None = None

    def check(self, where, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (
            self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            _fail(where, self.describe(), value)
        return int(value)

    def describe(self):
        bound = _bound_text(self.min, self.max, False, False)
        return f"an integer {bound}".strip()


@dataclasses.dataclass(frozen=True)
class Number(Spec):
    """A finite real number (an integer is accepted), optionally bounded."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None

    def check(self, where, value):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if ok and ((self.gt is not None and not value > self.gt) or (self.ge is not None and not value >= self.ge)
                   or (self.lt is not None and not value < self.lt)):
            ok = False
        if not ok:
            _fail(where, self.describe(), value)
        return value

    def describe(self):
        low, low_open = (self.gt, True) if self.gt is not None else (self.ge, False)
        bound = _bound_text(low, self.lt, low_open, True)
        return f"a number {bound}".strip()


@dataclasses.dataclass(frozen=True)
class Boolean(Spec):
    """``true`` or ``false``."""

    def check(self, where, value):
        if not isinstance(value, bool):
            _fail(where, self.describe(), value)
        return value

    def describe(self):
        return "true or false"


@dataclasses.dataclass(frozen=True)
class String(Spec):
    """A string, optionally one of ``choices`` (matched case-insensitively, stored as the choice)."""

    choices: tuple[str, ...] | None = None

    def check(self, where, value):
        if not isinstance(value, str):
            _fail(where, self.describe(), value)
        if self.choices is None:
            return value
        for c in self.choices:
            if value.strip().lower() == c.lower():
                return c
        raise ConfigError(
            f"config: {where} must be one of {', '.join(map(show, self.choices))}, got {show(value)}{suggest(value, self.choices)}"
        )

    def describe(self):
        return "a string" if self.choices is None else "one of " + ", ".join(f'"{c}"' for c in self.choices)


@dataclasses.dataclass(frozen=True)
class Name(Spec):
    """A name looked up by ``normalise`` (which returns the canonical name or raises ValueError)."""

    normalise: Callable[[str], str]
    what: str

    def check(self, where, value):
        if not isinstance(value, str):
            _fail(where, self.what, value)
        try:
            return self.normalise(value)
        except ValueError as e:
            raise ConfigError(f"config: {where}: {str(e).splitlines()[0]}") from None

    def describe(self):
        return self.what


@dataclasses.dataclass(frozen=True)
class Literal(Spec):
    """Exactly ``value`` (e.g. the string ``"fresh"``)."""

    value: Any

    def check(self, where, value):
        if not (type(value) is type(self.value) and value == self.value):
            _fail(where, self.describe(), value)
        return value

    def describe(self):
        return f'"{self.value}"' if isinstance(self.value, str) else repr(self.value)


class OneOf(Spec):
    """The first of several types that accepts the value."""

    def __init__(self, *specs: Spec):
        self.specs = specs

    def check(self, where, value):
        for spec in self.specs:
            try:
                return spec.check(where, value)
            except ConfigError:
                continue
        _fail(where, self.describe(), value)

    def describe(self):
        return " or ".join(s.describe() for s in self.specs)


@dataclasses.dataclass(frozen=True)
class ListOf(Spec):
    """A list of ``item`` values (``what`` names them in the plural), at least ``min_len`` long, optionally
    strictly increasing or distinct."""

    item: Spec
    what: str
    min_len: int = 1
    increasing: bool = False
    distinct: bool = False

    def check(self, where, value):
        if not isinstance(value, list) or len(value) < self.min_len:
            _fail(where, self.describe(), value)
        out = [self.item.check(f"{where}[{i}]", v) for i, v in enumerate(value)]
        if self.increasing and any(b <= a for a, b in zip(out, out[1:])):
            _fail(where, self.describe(), value)
        if self.distinct and len(set(map(repr, out))) != len(out):
            _fail(where, self.describe(), value)
        return out

    def describe(self):
        what = "a non-empty list" if self.min_len >= 1 else "a list"
        order = ", strictly increasing" if self.increasing else ", distinct" if self.distinct else ""
        return f"{what} of {self.what}{order}"


@dataclasses.dataclass(frozen=True)
class Anything(Spec):
    """Any TOML value (checked later by whatever consumes it)."""

    what: str = "any value"

    def check(self, where, value):
        return value

    def describe(self):
        return self.what
