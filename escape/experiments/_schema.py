"""Config schemas: the keys of every experiment kind, their types, defaults and allowed values.

One [`Schema`][escape.experiments.Schema] per experiment kind serves four purposes:

- validating a TOML file (unknown keys at any level are errors with a "did you mean"; a wrong type is a
  one-line error naming the key) before anything is written under ``--out``;
- validating ``--set KEY=VALUE`` overrides: every key the schema knows may be set, whether or not the file
  sets it ([`Schema.lookup`][escape.experiments.Schema.lookup]);
- resolving defaults, so that a run's manifest records every setting the run used
  ([`Schema.resolve`][escape.experiments.Schema.resolve]);
- the generated config reference in the docs ([`Schema.reference`][escape.experiments.Schema.reference]).

A schema is a top-level [`Section`][escape.experiments.Section] of [`Key`][escape.experiments.Key]s and
sub-sections; a [`Table`][escape.experiments.Table] is a section of named entries (``[optimizers.LABEL]``)
whose keys may depend on a selector value in the entry (the optimizer's hyperparameters depend on its
``optimizer`` name). Value types are small checkers (``Integer``, ``Number``, ``String``, ``ListOf`` ...)
that return the value, normalised, or raise a [`ConfigError`][escape.experiments.ConfigError].
"""

import copy
import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

from .._checks import suggest
from ._config import ConfigError
from ._spec import (  # noqa: F401  (the value types, re-exported: kinds import them from here)
    Anything,
    Boolean,
    Integer,
    ListOf,
    Literal,
    Name,
    Number,
    OneOf,
    Spec,
    String,
    show,
)


class _Sentinel:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED = _Sentinel("REQUIRED")
"""Default of a key that must be given."""
UNSET = _Sentinel("UNSET")
"""Default of an optional key that is left out of the resolved config when not given (TOML has no null)."""




# -------------------------------------------------------------------------------------------- keys, sections


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key: its type, default (``REQUIRED``, ``UNSET`` or a value) and a one-line description."""

    spec: Spec
    default: Any = REQUIRED
    doc: str = ""

    def default_text(self) -> str:
        if self.default is REQUIRED:
            return "required"
        if self.default is UNSET:
            return "unset"
        return _toml(self.default)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Section:
    """A TOML table: fixed ``keys``, sub-sections, and optionally keys that depend on the entry itself.

    Args:
        keys: the fixed keys.
        doc: one line about the section.
        sections: sub-sections (a ``Section`` or a ``Table``) by name.
        dynamic: ``(selector, keys_for)``: the keys of the entry also depend on the (checked) value of the key
            ``selector``; ``keys_for(value)`` returns them (an optimizer's hyperparameters, a landscape's
            parameters).
        dynamic_doc: how the docs describe the dynamic keys.
    """

    def __init__(self, keys: dict[str, Key], doc: str = "", *, sections: dict | None = None,
                 dynamic: tuple[str, Callable[[Any], dict[str, Key]]] | None = None, dynamic_doc: str = ""):
        self.keys, self.doc, self.sections = keys, doc, sections or {}
        self.dynamic, self.dynamic_doc = dynamic, dynamic_doc

    def keys_for(self, entry: dict, where: str) -> dict[str, Key]:
        """Every key an entry may hold (fixed first, then those its selector value brings)."""
        if self.dynamic is None:
            return self.keys
        selector, keys_for = self.dynamic
        keys = dict(self.keys)
        if selector in entry:
            value = keys[selector].spec.check(f"{where}.{selector}" if where else selector, entry[selector])
            for name, key in keys_for(value).items():
                keys.setdefault(name, key)
        return keys

    def resolve(self, entry, where: str) -> dict:
        if not isinstance(entry, dict):
            raise ConfigError(f"config: [{where}] must be a table of keys, got {show(entry)}")
        dot = f"{where}." if where else ""
        if self.dynamic is not None and self.dynamic[0] not in entry and self.keys[self.dynamic[0]].default is REQUIRED:
            selector = self.dynamic[0]
            key = self.keys[selector]
            raise ConfigError(f"config: {dot}{selector} is missing ({key.spec.describe()}; the other keys of "
                              f"[{where}] depend on it)")
        keys = self.keys_for(entry, where)
        names = [*keys, *self.sections]
        for k in entry:
            if k not in keys and k not in self.sections:
                kind = "section" if isinstance(entry[k], dict) else "key"
                raise UnknownKey(f"config: unknown {kind} {dot}{k}", k, _did_you_mean(k, names, dot))
        out = {}
        for k, key in keys.items():
            if k in entry:
                if isinstance(entry[k], dict) and not isinstance(key.spec, Anything):
                    tables = [n for n, kk in keys.items() if isinstance(kk.spec, Anything)] + list(self.sections)
                    near = difflib_close(k, tables)
                    hint = f" (did you mean [{dot}{near}]?)" if near else ""
                    raise ConfigError(f"config: {dot}{k} is a key, not a section [{dot}{k}]{hint}")
                out[k] = key.spec.check(f"{dot}{k}", entry[k])
            elif key.default is REQUIRED:
                raise ConfigError(f"config: {dot}{k} is missing ({key.spec.describe()}{': ' + key.doc if key.doc else ''})")
            elif key.default is not UNSET:
                out[k] = copy.deepcopy(key.default)
        for k, sub in self.sections.items():
            if k not in entry and sub.required:
                raise ConfigError(f"config: section [{dot}{k}] is missing")
            out[k] = sub.resolve(entry.get(k, {}), f"{dot}{k}")
        return out

    required = True

    def child(self, entry: dict, name: str, where: str):
        """The Key or sub-section ``name`` of this section for ``entry``; ConfigError if it has none."""
        if name in self.sections:
            return self.sections[name]
        keys = self.keys_for(entry, where)
        if name in keys:
            return keys[name]
        dot = f"{where}." if where else ""
        raise UnknownKey(f"unknown key {dot}{name}", name, _did_you_mean(name, [*keys, *self.sections], dot))


class UnknownKey(ConfigError):
    """An unknown key; ``hint`` is a "did you mean" among its neighbours (empty if none is close)."""

    def __init__(self, message: str, key: str, hint: str):
        super().__init__(message + hint)
        self.message, self.key, self.hint = message, key, hint


def difflib_close(word: str, names) -> str | None:
    """The closest of ``names`` to ``word`` (as ``suggest`` picks it), or None."""
    hint = suggest(word, names)
    return hint.split("'")[1] if hint else None


def _did_you_mean(word: str, names, prefix: str) -> str:
    hint = suggest(word, names)
    return hint.replace("mean '", f"mean '{prefix}") if hint else ""


class OptionalSection(Section):
    """A section that may be left out (its keys then take their defaults)."""

    required = False


class Table:
    """Named entries of one shape, ``[optimizers.LABEL]``: each entry is checked by ``entry``.

    Args:
        entry: the Section every entry follows.
        doc: one line about the table.
        label: what a label is, for the docs (e.g. "a name for the optimizer's rows and figures").
        check_label: raises ValueError for a bad label.
        min_entries: the least number of entries.
    """

    def __init__(self, entry: Section, doc: str = "", *, label: str = "LABEL",
                 check_label: Callable[[str], None] | None = None, min_entries: int = 1):
        self.entry, self.doc, self.label = entry, doc, label
        self.check_label, self.min_entries = check_label, min_entries

    required = True

    def resolve(self, entries, where: str) -> dict:
        if not isinstance(entries, dict) or any(not isinstance(v, dict) for v in entries.values()):
            raise ConfigError(f"config: [{where}] must hold tables [{where}.{self.label}], got {show(entries)}")
        if len(entries) < self.min_entries:
            raise ConfigError(f"config: [{where}] is empty; add at least one [{where}.{self.label}]")
        out = {}
        for label, entry in entries.items():
            if self.check_label is not None:
                try:
                    self.check_label(label)
                except ValueError as e:
                    raise ConfigError(f"config: [{where}.{label}]: {e}") from None
            out[label] = self.entry.resolve(entry, f"{where}.{label}")
        return out


# ---------------------------------------------------------------------------------------------------- schema


class Schema:
    """The keys of one experiment kind.

    Args:
        kind: the ``kind = "..."`` this schema belongs to.
        doc: one paragraph for the config reference.
        top: the top-level section (its keys and sub-sections); ``name``, ``kind``, ``description``,
            ``preset`` and ``presets`` are added to every schema.
        resumable: dotted keys (or section names) that may change between a run and its resumption because
            no finished cell depends on them (``run.chunk_size``, ``fit``); ``name``, ``description`` and
            ``preset`` always may.
    """

    def __init__(self, kind: str, doc: str, top: Section, resumable: tuple[str, ...] = ()):
        self.kind, self.doc = kind, doc
        self.resumable = ("name", "description", "preset", *resumable)
        common = {
            "name": Key(String(), UNSET, "the experiment's name (default: the file's stem)"),
            "kind": Key(Literal(kind), kind, "the experiment kind; selects this schema"),
            "description": Key(String(), "", "one line shown by `escape list`"),
            "preset": Key(String(), UNSET, "the preset applied (set by `--set preset=NAME`, recorded in the manifest)"),
            "presets": Key(Anything("tables of dotted keys and values"), UNSET,
                           "named sets of overrides, `[presets.NAME]` with `\"section.key\" = value`"),
        }
        self.top = Section({**common, **top.keys}, top.doc, sections=top.sections, dynamic=top.dynamic)

    def resolve(self, config: dict) -> dict:
        """The config with every key checked and every default filled in (``UNSET`` keys left out).

        Raises:
            ConfigError: one line naming the first offending key (unknown, with a "did you mean"; missing;
                of the wrong type or out of range), or a preset that names an unknown key.
        """
        if not isinstance(config, dict):
            raise ConfigError(f"config: expected a table of keys, got {type(config).__name__}")
        try:
            resolved = self.top.resolve(config, "")
        except UnknownKey as e:
            raise self._elsewhere(e, config) from None
        presets = config.get("presets") or {}
        if not isinstance(presets, dict):
            raise ConfigError(f"config: [presets] must hold tables [presets.NAME], got {show(presets)}")
        for name, items in presets.items():  # after the file's own keys, so that their errors come first
            self.check_preset(config, name, items)
        resolved.pop("presets", None)  # overrides to choose from, not settings of this run
        return resolved

    def check_preset(self, config: dict, name: str, items) -> None:
        if not isinstance(items, dict):
            raise ConfigError(f"config: [presets.{name}] must be a table of \"section.key\" = value, got {items!r}")
        # Checked as applied: a preset may add a table entry (``optimizers.NEW.optimizer`` and the keys beside it),
        # so each key is looked up in the config with the preset's selectors set (selectors first, as --set).
        scratch = copy.deepcopy(config)
        selector = lambda dotted: dotted.rsplit(".", 1)[-1] not in ("optimizer", "name")
        for dotted, value in sorted(items.items(), key=lambda kv: selector(kv[0])):
            try:
                key = self.lookup(scratch, dotted)
            except ConfigError as e:
                raise ConfigError(f"config: presets.{name}: {str(e).removeprefix('config: ')}") from None
            key.spec.check(f"presets.{name}: {dotted}", value)
            if not selector(dotted):
                node = scratch
                for part in dotted.split(".")[:-1]:
                    node = node.setdefault(part, {}) if isinstance(node, dict) else {}
                if isinstance(node, dict):
                    node[dotted.rsplit(".", 1)[-1]] = value

    def lookup(self, config: dict, dotted: str) -> Key:
        """The Key that a dotted name (``run.n_particles``, ``optimizers.adam.b1``) refers to in ``config``.

        Table entries that ``config`` does not hold yet have the keys of an entry without a selector.

        Raises:
            ConfigError: ``unknown key ...`` with a "did you mean", or a name that is a section.
        """
        parts = dotted.split(".")
        node, entry, where = self.top, config, ""
        for i, part in enumerate(parts):
            if isinstance(node, Table):
                table, known = node, isinstance(entry, dict) and part in entry
                entry = entry.get(part, {}) if isinstance(entry, dict) else {}
                node, where = node.entry, f"{where}.{part}" if where else part
                selector = node.dynamic[0] if node.dynamic else None
                if selector and selector not in entry and i + 1 < len(parts) and parts[i + 1] != selector:
                    have = [k for k, v in config.get(parts[0], {}).items()] if i == 1 else []
                    hint = suggest(part, have).replace("mean '", f"mean '{parts[0]}.") if not known else ""
                    raise ConfigError(f"unknown key {dotted!r}: [{where}] has no {selector} yet{hint}; a new "
                                      f"[{'.'.join(parts[:i])}.{table.label}] needs {where}.{selector} first")
                if i == len(parts) - 1:
                    raise ConfigError(f"{dotted!r} is a section, set one of its keys")
                continue
            if not isinstance(node, Section):
                raise ConfigError(f"unknown key {dotted!r} ({'.'.join(parts[:i])} is a key, not a section)")
            try:
                child = node.child(entry if isinstance(entry, dict) else {}, part, where)
            except UnknownKey as e:
                raise self._elsewhere(e, config) from None
            entry = entry.get(part, {}) if isinstance(entry, dict) else {}
            where = f"{where}.{part}" if where else part
            node = child
        if not isinstance(node, Key):
            raise ConfigError(f"{dotted!r} is a section, set one of its keys")
        return node

    def _elsewhere(self, error: "UnknownKey", config: dict) -> ConfigError:
        """The error, with a "did you mean" among every key of the schema if its neighbours had none
        (``sharpnes`` at the top level: ``run.sharpness``; ``burn_in`` in [run]: ``optimizers.LABEL.burn_in``)."""
        if error.hint:
            return ConfigError(str(error))
        labels = {k: list(v) for k, v in config.items() if isinstance(v, dict) and k in self.top.sections}
        everywhere = {}
        for dotted in self.dotted_keys():
            head = dotted.split(".")[0]
            for label in labels.get(head, [None]) if ".LABEL." in dotted else [None]:
                name = dotted.replace(".LABEL.", f".{label}.") if label else dotted
                everywhere.setdefault(dotted.split(".")[-1], name)
        hint = suggest(error.key, everywhere)
        if hint:
            close = hint.split("'")[1]
            hint = f" (did you mean {everywhere[close]!r}?)"
        return ConfigError(error.message + hint)

    def dotted_keys(self, config: dict | None = None) -> list[str]:
        """Every dotted key of the schema (Table entries as ``optimizers.LABEL.KEY``; dynamic keys of each
        selector value that ``keys_for`` documents are included by the reference, not here)."""
        out = []

        def walk(node, prefix):
            if isinstance(node, Table):
                walk(node.entry, f"{prefix}.{node.label}")
                return
            for k in node.keys:
                out.append(f"{prefix}.{k}" if prefix else k)
            for k, sub in node.sections.items():
                walk(sub, f"{prefix}.{k}" if prefix else k)

        walk(self.top, "")
        return out

    def reference(self) -> str:
        """The Markdown reference of this kind: a table of keys per section."""
        from ._reference import schema_reference

        return schema_reference(self)


def without(config: dict, dotted_keys) -> dict:
    """A copy of ``config`` without the given dotted keys (whole sections for a section's name)."""
    out = copy.deepcopy(config)
    for dotted in dotted_keys:
        node, parts = out, dotted.split(".")
        for p in parts[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return out


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two configs (recursively; missing counts as differing)."""
    out = []
    for k in sorted(set(a) | set(b), key=str):
        name = f"{prefix}{k}"
        va, vb = a.get(k, UNSET), b.get(k, UNSET)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{name}.")
        elif va != vb:
            out.append(name)
    return out


def describe_diff(a: dict, b: dict, a_name: str, b_name: str, limit: int = 3) -> str:
    """``run.n_particles: 1500 in A, 32 in B; ...`` for the keys that differ (at most ``limit`` of them)."""
    keys = config_diff(a, b)

    def get(cfg, dotted):
        node = cfg
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return "unset"
            node = node[part]
        return json.dumps(node)

    parts = [f"{k}: {get(a, k)} in {a_name}, {get(b, k)} in {b_name}" for k in keys[:limit]]
    more = f"; and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(parts) + more


# ------------------------------------------------------------------------------------- shared building blocks


def optimizer_name_spec() -> Name:
    from ..optim._registry import canonical_optimizer_name

    def normalise(value):
        try:
            return canonical_optimizer_name(value)
        except ValueError as e:  # drop the function's name: the message names the key already
            raise ValueError(str(e).split(": ", 1)[-1]) from None

    return Name(normalise,
                "an optimizer name of `escape.optim` (case-insensitive; aliases such as \"sgd-momentum\")")


def hyperparameter_keys(name: str, skip: tuple[str, ...] = ()) -> dict[str, Key]:
    """Keys for the hyperparameters of the registry optimizer ``name``, defaults from its signature."""
    import inspect

    from ..optim._registry import optimizer_hyperparameters

    out = {}
    for k, default in optimizer_hyperparameters(name).items():
        if k in skip:
            continue
        required = default is inspect.Parameter.empty
        spec = Number(gt=0) if k == "learning_rate" else Number()
        out[k] = Key(spec, REQUIRED if required else default, f"hyperparameter of {name}")
    return out


def optimizer_table(extra: dict[str, Key], doc: str, *, check_label=None) -> Table:
    """``[optimizers.LABEL]``: ``optimizer`` (a registry name), its hyperparameters, and ``extra`` keys."""
    entry = Section(
        {"optimizer": Key(optimizer_name_spec(), REQUIRED, "which optimizer (stored as its canonical name)"), **extra},
        dynamic=("optimizer", hyperparameter_keys),
        dynamic_doc="and the optimizer's hyperparameters with their defaults (see *Optimizers* below)",
    )
    return Table(entry, doc, label="LABEL", check_label=check_label)


def seed_key() -> Key:
    return Key(Integer(min=0), 0, "root seed; every cell's key is derived from (seed, cell) only")


def batch_size_key() -> Key:
    return Key(Integer(min=1), 1, "minibatch size B")


def particles_key() -> Key:
    return Key(Integer(min=1), 1000, "independent runs per cell")


def parts_section(parts: tuple[str, ...]) -> "OptionalSection":
    """The ``[run]`` section of an experiment made of optional parts: ``run.parts``, all of them by default."""
    return OptionalSection({
        "parts": Key(ListOf(String(parts), "parts", distinct=True), list(parts), "what to run"),
    }, "Which parts run.")


def schema_on_first_use(build: Callable[[], "Schema"], module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that builds the kind's ``SCHEMA`` with ``build`` on first use, once: for a kind
    whose schema reads `escape.train`, which imports the experiments package (a cycle at import time)."""
    cached = functools.cache(build)

    def __getattr__(name: str):
        if name == "SCHEMA":
            return cached()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
