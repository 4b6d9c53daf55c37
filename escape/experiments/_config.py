"""Experiment configs: TOML files, presets and ``--set key=value`` overrides."""

import copy
import tomllib
from pathlib import Path

EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"


class ConfigError(ValueError):
    """A bad experiment config or override (the CLI prints it on one line and exits with code 2)."""


def available_experiments() -> dict[str, Path]:
    """Bundled experiment names and their TOML files."""
    if not EXPERIMENTS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(EXPERIMENTS_DIR.glob("*.toml"))}


def load_config(name_or_path: str) -> dict:
    """Load a bundled experiment by name, or any TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix == ".toml":
        bundled = available_experiments()
        if name_or_path not in bundled:
            names = ", ".join(bundled) or "none"
            raise ConfigError(f"experiment: unknown experiment {name_or_path!r} (bundled: {names}; or give a .toml path)")
        path = bundled[name_or_path]
    if not path.is_file():
        raise ConfigError(f"experiment: no such file {str(path)!r}")
    try:
        with path.open("rb") as f:
            config = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"experiment: malformed TOML in {path.name}: {e}") from None
    config.setdefault("name", path.stem)
    return config


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def _set(config: dict, dotted: str, value) -> None:
    """Set a dotted key, creating the tables on its path."""
    keys = dotted.split(".")
    node = config
    for k in keys[:-1]:
        if not isinstance(node.get(k, {}), dict):
            raise ConfigError(f"--set: {dotted!r}: {k} is a key, not a section")
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def apply_overrides(config: dict, sets: list[str]) -> dict:
    """Apply ``key=value`` overrides (dotted keys, TOML values). ``preset=NAME`` applies a preset first.

    Every key of the config's schema may be set, whether or not the config holds it (``run.mode``,
    ``fit.bootstrap``, ``optimizers.adam.b1``); an unknown key is a ConfigError with a "did you mean".
    Values are checked when the config is resolved ([`escape.experiments.check_config`][]).
    """
    from ._runner import schema_for
    from .._checks import suggest

    config = copy.deepcopy(config)
    pairs = []
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        pairs.append((k.strip(), _parse_value(v.strip())))
    presets = config.pop("presets", {})
    schema = schema_for(config)
    if not isinstance(presets, dict):
        raise ConfigError(f"config: [presets] must hold tables [presets.NAME], got {presets!r}")
    for name, items in presets.items():  # every preset of the file is checked, applied or not
        try:
            schema.check_preset(config, name, items)
        except ConfigError as preset_error:
            # A preset that names a key of a broken section: the file's own error is the one to report.
            try:
                schema.resolve(config)
            except ConfigError as file_error:
                # (a missing key may still come from --set, but not a selector the preset's keys depend on)
                if "is missing" not in str(file_error) or "depend on it" in str(file_error):
                    raise file_error from None
            raise preset_error from None

    def checked_set(dotted, value, context):
        try:
            schema.lookup(config, dotted)
        except ConfigError as e:
            raise ConfigError(f"{context}: {e}") from None
        _set(config, dotted, value)

    for k, v in pairs:
        if k == "preset":
            if v not in presets:
                raise ConfigError(
                    f"--set: unknown preset {v!r}{suggest(v, presets)} (available: {', '.join(presets) or 'none'})"
                )
            for pk, pv in sorted(presets[v].items(), key=lambda kv: kv[0].rsplit(".", 1)[-1] not in ("optimizer", "name")):
                checked_set(pk, pv, f"config: presets.{v}")  # selectors first, as for --set below
            config["preset"] = v
    # Selectors first (optimizers.NEW.optimizer before optimizers.NEW.learning_rate): the keys beside them
    # depend on them.
    for k, v in sorted(pairs, key=lambda kv: kv[0].rsplit(".", 1)[-1] not in ("optimizer", "name")):
        if k != "preset":
            checked_set(k, v, "--set")
    return config


def _has_results(out: Path) -> bool:
    """Whether ``out`` holds anything a run wrote besides its manifest (hidden files such as caches aside)."""
    return any(p.name != "manifest.json" and not p.name.startswith(".") for p in out.iterdir())


def prepare_run_dir(out, config: dict):
    """Create or check the run directory ``out`` for ``config`` (:func:`_prepare_run_dir`).

    In a multi-process run process 0 prepares it and every process learns whether it could: all raise
    ConfigError together (no process is left waiting for the others' collectives).
    """
    import jax

    if jax.process_count() == 1:
        return _prepare_run_dir(out, config)
    from .._distributed import broadcast, is_writer
    import numpy as np

    error = None
    if is_writer():
        try:
            _prepare_run_dir(out, config)
        except ConfigError as e:
            error = e
    ok = int(broadcast(np.int32(error is None)))
    if error is not None:
        raise error
    if not ok:
        raise ConfigError(f"--out: process 0 could not use {out} (its message says why)")
    return Path(out)


def _prepare_run_dir(out, config: dict):
    """Create ``out`` and its manifest, or check that it holds a run of the same config (resume).

    A directory whose manifest holds another config but no results yet (a run that failed before its first
    cell), or one that differs only in keys no cell depends on (the schema's ``resumable``: ``fit.*``,
    ``run.chunk_size``, ``description``...), takes the new config. Returns the directory as a Path. Raises
    ConfigError, naming the keys that differ, if ``out`` holds results of a different config, and for OS
    errors (one line).
    """
    from ._io import atomic_write_json, manifest, read_manifest
    from ._schema import describe_diff

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        man_path = out / "manifest.json"
        if man_path.exists():
            try:
                old = read_manifest(man_path)["config"]
            except ValueError as e:
                raise ConfigError(
                    f"--out: {man_path} is damaged ({e}); restore it, or delete it if {out} holds a run of this same "
                    "config (its finished cells are kept), or choose another --out"
                ) from None
            if old == config:  # the usual resume: the manifest holds this resolved config already
                return out
            old = _resolved_or_raw(old)
            if old == config:  # a manifest written before configs were resolved
                return out
            from ._runner import schema_for
            from ._schema import without

            keep = schema_for(config).resumable
            same_cells = without(old, keep) == without(config, keep)
            if not same_cells and _has_results(out):
                if old.get("kind", "escape-rates") != config.get("kind", "escape-rates"):
                    raise ConfigError(f"--out: {out} holds a {old.get('kind', 'escape-rates')!r} run, not a "
                                      f"{config.get('kind', 'escape-rates')!r} one; choose another --out")
                raise ConfigError(
                    f"--out: {out} holds a run with a different config ({describe_diff(old, config, 'that run', 'this one')}); "
                    "choose another --out or delete it"
                )
            # Same cells (only keys such as fit.* or run.chunk_size differ), or nothing computed yet: the
            # directory takes the new config, and its tables are rebuilt under it.
        atomic_write_json(man_path, manifest(config))
    except OSError as e:
        raise ConfigError(f"--out: {e.filename or out}: {e.strerror or e}") from None
    return out


def _resolved_or_raw(config: dict) -> dict:
    """A stored config resolved under today's schema (manifests before schemas stored it as written)."""
    from ._runner import check_config

    try:
        return check_config(config)
    except ConfigError:
        return config


def stored_config(out, owner: str = "DIR") -> dict:
    """The config recorded in ``out/manifest.json``; ConfigError (naming ``owner``) if there is none."""
    from ._io import read_manifest

    path = Path(out) / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"{owner}: {out} has no manifest.json (not an experiment directory)")
    try:
        return read_manifest(path)["config"]
    except ValueError as e:
        raise ConfigError(f"{owner}: cannot read {path} ({e}); restore it") from None
    except OSError as e:
        raise ConfigError(f"{owner}: cannot read {path} ({e.strerror or e})") from None
