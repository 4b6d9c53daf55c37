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


def _set(config: dict, dotted: str, value, *, create: bool = False) -> None:
    keys = dotted.split(".")
    node = config
    for i, k in enumerate(keys[:-1]):
        if not isinstance(node, dict) or k not in node:
            raise ConfigError(f"--set: unknown key {dotted!r} (no section {'.'.join(keys[: i + 1])!r})")
        node = node[k]
    if not isinstance(node, dict) or (keys[-1] not in node and not create):
        raise ConfigError(f"--set: unknown key {dotted!r}")
    if isinstance(node.get(keys[-1]), dict):
        raise ConfigError(f"--set: {dotted!r} is a section, set one of its keys")
    node[keys[-1]] = value


def apply_overrides(config: dict, sets: list[str], *, create: bool = False) -> dict:
    """Apply ``key=value`` overrides (dotted keys, TOML values). ``preset=NAME`` applies a preset first.

    ``create=True`` also sets keys the config does not hold yet (in existing sections); unknown keys are then
    left to the runner's ``validate``.
    """
    config = copy.deepcopy(config)
    pairs = []
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        pairs.append((k.strip(), _parse_value(v.strip())))
    presets = config.pop("presets", {})
    for k, v in pairs:
        if k == "preset":
            if v not in presets:
                raise ConfigError(f"--set: unknown preset {v!r} (available: {', '.join(presets) or 'none'})")
            for pk, pv in presets[v].items():
                _set(config, pk, pv)
            config["preset"] = v
    for k, v in pairs:
        if k != "preset":
            _set(config, k, v, create=create)
    return config


def prepare_run_dir(out, config: dict):
    """Create ``out`` and its manifest, or check that it holds a run of the same config (resume).

    Returns the directory as a Path. Raises ConfigError if ``out`` holds a different config.
    """
    import json
    from pathlib import Path

    from ._io import atomic_write_json, manifest

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    man_path = out / "manifest.json"
    if man_path.exists():
        old = json.loads(man_path.read_text())
        if old.get("config") != config:
            raise ConfigError(f"--out: {out} holds a run with a different config; choose another --out or delete it")
    else:
        atomic_write_json(man_path, manifest(config))
    return out


def stored_config(out, owner: str = "DIR") -> dict:
    """The config recorded in ``out/manifest.json``; ConfigError (naming ``owner``) if there is none."""
    import json
    from pathlib import Path

    path = Path(out) / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"{owner}: {out} has no manifest.json (not an experiment directory)")
    return json.loads(path.read_text())["config"]
