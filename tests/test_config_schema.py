"""Config schemas: unknown keys and wrong types at every level are one-line errors before anything is written;
--set reaches every schema key; manifests hold the resolved config; the generated reference lists every key."""

import json
import tomllib
from pathlib import Path

import pytest

from escape.cli import main
from escape.experiments import ConfigError, apply_overrides, load_config
from escape.experiments._reference import config_reference
from escape.experiments._runner import RUNNERS, check_config
from escape.experiments._schema import Boolean, Integer, ListOf, Literal, Name, Number, OneOf, String

ROOT = Path(__file__).resolve().parents[1]
FIG6 = (ROOT / "experiments" / "fig6.toml").read_text()
TINY = ["--set", "preset=smoke", "--set", "run.sharpness=[3.0, 4.0, 5.0]", "--set", "run.n_particles=16", "--quiet"]


def _run_main(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    captured = capsys.readouterr()
    return e.value.code, captured.err


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old  # one place only (not a comment that quotes it)
    return text.replace(old, new, 1)


# Misspelled keys at every level of the fig6 file, an unknown section, wrong types of every value kind.
BAD_FILES = [
    ("top-level key", ("\nseed = 0\n", "\nseed = 0\nsharpnes = [1.0]\n"), "sharpnes", "did you mean"),
    ("unknown section", ("[landscape]", "[extra]\na = 1\n\n[landscape]"), "extra", "unknown section"),
    ("landscape key", ("dim = 10", "dims = 10"), "landscape.dims", "did you mean 'landscape.dim'"),
    ("run key", ("batch_size = 1", "batchsize = 1"), "run.batchsize", "did you mean 'run.batch_size'"),
    ("optimizer key", ("burn_in = 20", "burnin = 20"), "optimizers.sgd.burnin", "did you mean 'optimizers.sgd.burn_in'"),
    ("hyperparameter", ("\nbeta = 0.9\n", "\nbta = 0.9\n"), "optimizers.momentum.bta", "did you mean 'optimizers.momentum.beta'"),
    ("fit key", ('prefactor = "none"', 'prefator = "none"'), "fit.prefator", "did you mean 'fit.prefactor'"),
    ("preset key", ('"run.n_particles" = 32', '"run.nparticles" = 32'), "run.nparticles", "presets.smoke"),
    ("number as string", ("learning_rate = 0.0034", 'learning_rate = "0.0034"'), "optimizers.sgd.learning_rate", "a number"),
    ("integer as float", ("n_particles = 1500", "n_particles = 1500.5"), "run.n_particles", "an integer"),
    ("bool as integer", ("chunk_size = 2048", "chunk_size = false"), "run.chunk_size", "an integer"),
    ("integer as bool", ("max_steps = 200000", "max_steps = true"), "run.max_steps", "an integer"),
    ("choice", ('mode = "discrete"', 'mode = "discrete-time"'), "run.mode", "one of"),
    ("string as number", ('noise = "data"', "noise = 3"), "landscape.noise", "one of"),
    ("list as number", ("sharpness = [1.0, 1.125", "sharpness = 2.0  # [1.0, 1.125"), "run.sharpness", "list"),
    ("list item", ("sharpness = [1.0, 1.125", 'sharpness = [1.0, "a", 1.125'), "run.sharpness[1]", "a number"),
    ("nested section", ("[fit]\n", "[fit.window]\nlow = 1\n\n[fit]\n"), "fit.window", "unknown section"),
    ("optimizer name", ('optimizer = "adam"', 'optimizer = "adma"'), "optimizers.adam.optimizer", "did you mean 'adam'"),
    ("missing key", ('optimizer = "adai"\nlearning_rate = 0.0035', 'optimizer = "adai"'), "optimizers.adai.learning_rate",
     "missing"),
    # the file's own error, not a preset's complaint about the section it broke
    ("section a preset sets", ("[landscape]", "[landscap]"), "unknown section landscap", "did you mean 'landscape'"),
    ("optimizer name a preset sets", ('optimizer = "adai"', 'optimizer = "adaj"'), "optimizers.adai.optimizer:", "adaj"),
    ("missing selector", ('optimizer = "adam"\n', ""), "optimizers.adam.optimizer is missing", "depend on it"),
    ("presets misspelled", ("[presets.smoke]", "[preset.smoke]"), "preset is a key", "did you mean [presets]"),
]


@pytest.mark.parametrize("what,edit,key,needle", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_exits_2_naming_the_key_and_writes_nothing(what, edit, key, needle, tmp_path, capsys, monkeypatch):
    import escape.cli

    monkeypatch.setattr(escape.cli, "run_experiment", lambda *a, **k: pytest.fail(f"{what}: the config was accepted"))
    path = tmp_path / "exp.toml"
    path.write_text(_edit(FIG6, *edit))
    out = tmp_path / "out"
    code, err = _run_main(["run", str(path), "--out", str(out)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("escape: error:"), err
    assert key in lines[0] and needle in lines[0], lines[0]
    assert not out.exists()


def test_a_section_given_as_a_value():
    config = load_config("fig6")
    config["fit"] = 3
    with pytest.raises(ConfigError, match=r"^config: \[fit\] must be a table of keys, got 3$"):
        check_config(config)
    config = load_config("fig6")
    config["run"]["mode"] = {"a": 1}
    with pytest.raises(ConfigError, match=r"run.mode is a key, not a section"):
        check_config(config)


def test_corrected_file_then_runs_in_the_same_out(tmp_path, capsys):
    path, out = tmp_path / "exp.toml", tmp_path / "out"
    path.write_text(_edit(FIG6, "learning_rate = 0.0034", 'learning_rate = "0.0034"'))
    code, err = _run_main(["run", str(path), "--out", str(out), *TINY], capsys)
    assert code == 2 and "optimizers.sgd.learning_rate" in err and not out.exists()
    path.write_text(FIG6)
    main(["run", str(path), "--out", str(out), *TINY])
    assert (out / "results.csv").is_file() and len(list((out / "cells").glob("*.npz"))) == 12
    # a run of another config in the same directory is refused, naming the key that differs
    code, err = _run_main(["run", str(path), "--out", str(out), *TINY, "--set", "run.n_particles=17"], capsys)
    assert code == 2 and "run.n_particles: 16 in that run, 17 in this one" in err


def test_keys_no_cell_depends_on_may_change_on_resume(tmp_path, capsys):
    """fit.* and run.chunk_size change no cell: the run resumes (nothing recomputed) under the new settings."""
    out = tmp_path / "out"
    main(["run", "fig6", "--out", str(out), *TINY])
    cells = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    main(["run", "fig6", "--out", str(out), *TINY, "--set", "fit.min_mean_steps=5", "--set", "run.chunk_size=512"])
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == cells
    assert json.loads((out / "manifest.json").read_text())["config"]["fit"]["min_mean_steps"] == 5
    code, err = _run_main(["run", "saddle", "--out", str(out), "--set", "preset=small"], capsys)
    assert code == 2 and "holds a 'escape-rates' run, not a 'saddle' one" in err


def test_set_order_does_not_matter_for_a_new_optimizer():
    sets = ["optimizers.extra.learning_rate=0.003", "optimizers.extra.optimizer=SGD"]
    cfg = check_config(apply_overrides(load_config("fig6"), sets))
    assert cfg["optimizers"]["extra"] == {"optimizer": "sgd", "learning_rate": 0.003, "burn_in": 0}
    with pytest.raises(ConfigError, match="has no optimizer yet.*did you mean 'optimizers.adam'"):
        apply_overrides(load_config("fig6"), ["optimizers.adamm.b2=0.9"])
    with pytest.raises(ConfigError, match="did you mean 'optimizers.adam.b2'"):
        apply_overrides(load_config("fig6"), ["optimizers.adam.b3=0.9"])


def test_out_that_holds_only_a_manifest_takes_a_new_config(tmp_path):
    """A directory whose earlier run failed before its first cell holds no results to protect."""
    out = tmp_path / "out"
    cfg = check_config(apply_overrides(load_config("fig6"), ["preset=smoke"]))
    from escape.experiments._config import prepare_run_dir

    prepare_run_dir(out, cfg)
    other = check_config(apply_overrides(load_config("fig6"), ["preset=smoke", "seed=3"]))
    prepare_run_dir(out, other)
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 3
    (out / "results.csv").write_text("x\n")
    with pytest.raises(ConfigError, match=r"seed: 3 in that run, 0 in this one"):
        prepare_run_dir(out, cfg)


def _bundled(kind: str) -> str:
    """The bundled experiment of a kind (every kind ships one)."""
    from escape.experiments import available_experiments

    names = [n for n in available_experiments() if load_config(n).get("kind", "escape-rates") == kind]
    assert names, f"no bundled experiment of kind {kind!r}"
    return names[0]


def _sample(spec):
    """A valid value of a spec (None for values this test does not set)."""
    if isinstance(spec, Integer):
        return max(spec.min or 0, 1) if spec.max is None else spec.min
    if isinstance(spec, Number):
        return (spec.gt + 0.5) if spec.gt is not None else (spec.ge or 0) + 0.25
    if isinstance(spec, Boolean):
        return True
    if isinstance(spec, String):
        return spec.choices[-1] if spec.choices else "text"
    if isinstance(spec, Literal):
        return spec.value
    if isinstance(spec, OneOf):
        return _sample(spec.specs[0])
    if isinstance(spec, ListOf):
        return [_sample(spec.item)] * max(1, spec.min_len)  # (a list of min_len > 1 is not strictly increasing)
    if isinstance(spec, Name):
        return "sgd"
    return None


def _leaves(schema, config):
    """Every (dotted key, Key) the schema accepts for ``config`` (entries of tables for each label it holds)."""
    from escape.experiments._schema import Table

    out = []

    def walk(node, entry, prefix):
        if isinstance(node, Table):
            for label, sub in entry.items():
                walk(node.entry, sub, f"{prefix}.{label}")
            return
        for k, key in node.keys_for(entry, prefix).items():
            out.append((f"{prefix}.{k}" if prefix else k, key))
        for k, sub in node.sections.items():
            walk(sub, entry.get(k, {}), f"{prefix}.{k}" if prefix else k)

    walk(schema.top, config, "")
    return out


@pytest.mark.parametrize("kind", sorted(RUNNERS))
def test_set_reaches_every_schema_key(kind):
    """Every key of the kind's schema may be --set, whether or not the file sets it, and ends up resolved."""
    config = load_config(_bundled(kind))
    schema = RUNNERS[kind].SCHEMA
    count = 0
    for dotted, key in _leaves(schema, config):
        value = _sample(key.spec)
        if value is None or dotted in ("kind", "preset", "name") or dotted.endswith((".optimizer", "landscape.name")):
            continue  # the selectors: the keys beside them depend on them
        parts = dotted.split(".")
        stripped = json.loads(json.dumps(config))
        node = stripped
        for p in parts[:-1]:
            node = node.get(p, {})
        node.pop(parts[-1], None)  # the file leaves it out
        resolved = schema.resolve(apply_overrides(stripped, [f"{dotted}={json.dumps(value)}"]))
        node = resolved
        for p in parts:
            node = node[p]
        assert node == (value if not isinstance(key.spec, String) else key.spec.check(dotted, value)), dotted
        count += 1
    assert count >= 10
    first = next(iter(schema.top.sections["run"].keys))
    with pytest.raises(ConfigError, match=f"did you mean 'run.{first}'"):
        apply_overrides(config, [f"run.{first[:-1]}=2"])


def test_set_keys_the_file_leaves_at_defaults(tmp_path, capsys):
    toml = _edit(_edit(FIG6, 'mode = "discrete"\n', ""), "min_mean_steps = 50\n", "")
    path = tmp_path / "exp.toml"
    path.write_text(toml)
    cfg = check_config(apply_overrides(load_config(str(path)), ["run.mode=sde", "fit.min_mean_steps=10",
                                                                 "optimizers.adam.b2=0.99", "fit.bootstrap=5"]))
    assert cfg["run"]["mode"] == "sde" and cfg["fit"]["min_mean_steps"] == 10 and cfg["fit"]["bootstrap"] == 5
    assert cfg["optimizers"]["adam"]["b2"] == 0.99


def test_manifest_holds_the_resolved_config(tmp_path):
    out = tmp_path / "out"
    path = tmp_path / "exp.toml"
    path.write_text(_edit(FIG6, 'optimizer = "momentum"', 'optimizer = "SGD-Momentum"'))
    main(["run", str(path), "--out", str(out), *TINY])
    stored = json.loads((out / "manifest.json").read_text())
    cfg = stored["config"]
    assert cfg["optimizers"]["momentum"]["optimizer"] == "momentum"  # canonical name
    assert cfg["optimizers"]["adam"]["b1"] == 0.9 and cfg["optimizers"]["adam"]["eps"] == 1e-8  # defaults
    assert cfg["optimizers"]["adai"]["beta0"] == 0.1 and cfg["run"]["mode"] == "discrete"
    assert "bootstrap" not in cfg["fit"] and "presets" not in cfg and cfg["preset"] == "smoke"
    assert list(cfg["optimizers"]) == ["sgd", "momentum", "adam", "adai"]  # the file's order
    assert stored["versions"]["jax"] and stored["commit"]
    # the rows of results.csv follow the config, as the printed table and the returned DataFrame do
    import pandas as pd

    table = pd.read_csv(out / "results.csv")
    assert list(dict.fromkeys(table["optimizer"])) == ["sgd", "momentum", "adam", "adai"]
    main(["fit", str(out)])
    assert list(dict.fromkeys(pd.read_csv(out / "results.csv")["optimizer"])) == ["sgd", "momentum", "adam", "adai"]


@pytest.mark.parametrize("name", ["sgd-momentum", "Momentum", "HEAVY_BALL"])
def test_one_optimizer_name_in_every_command(name):
    from escape.train import TrainConfig

    cfg = check_config(apply_overrides(load_config("fig6"), [f"optimizers.momentum.optimizer={name}"]))
    assert cfg["optimizers"]["momentum"]["optimizer"] == "momentum"
    assert TrainConfig(optimizer=name, learning_rate=0.1).optimizer == "momentum"
    saddle = check_config(apply_overrides(load_config("saddle"), [f"optimizers.momentum.optimizer={name}"]))
    assert saddle["optimizers"]["momentum"]["optimizer"] == "momentum"


@pytest.mark.parametrize("kind,sets,needle", [
    ("saddle", ["run.horizon=[1]"], "did you mean 'run.horizons'"),
    ("saddle", ["landscape.abs_hessian=[1, -1]"], "landscape.abs_hessian[1]"),
    ("saddle", ["run.methods=[\"ode\"]"], "run.methods[0]"),
    ("saddle", ["optimizers.adam.release=1.5"], "optimizers.adam.release"),
    ("compare", ["run.epoch=3"], "did you mean 'run.epochs'"),
    ("compare", ["run.epochs=\"3\""], "run.epochs"),
    ("compare", ["compilation_cache=\"yes\""], "compilation_cache must be true or false"),
    ("compare", ["seeds=[0, 0]"], "seeds"),
    ("compare", ["optimizers.adai.beta00=0.1"], "did you mean 'optimizers.adai.beta0'"),
    ("compare", ["optimizers.adai.beta0=\"abc\""], "optimizers.adai.beta0 must be a number"),
    ("compare", ["optimizers.adam.optimizer=adamm"], "did you mean 'adam'"),
])
def test_other_kinds_check_their_keys(kind, sets, needle):
    name = {"saddle": "saddle", "compare": "compare"}[kind]
    with pytest.raises(ConfigError) as info:
        check_config(apply_overrides(load_config(name), sets))
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_unknown_key_in_a_compare_file_is_refused(tmp_path):
    text = (ROOT / "experiments" / "compare.toml").read_text()
    path = tmp_path / "c.toml"
    path.write_text(_edit(text, "epochs = 30", "epochs = 30\nepoch = 2"))
    with pytest.raises(ConfigError, match="run.epoch .*did you mean 'run.epochs'"):
        check_config(load_config(str(path)))


def test_config_reference_is_generated_and_lists_every_key():
    page = (ROOT / "docs" / "config.md").read_text()
    assert page == config_reference(), "docs/config.md is stale: run `make config-docs`"
    for kind, mod in RUNNERS.items():
        assert f'kind = "{kind}"' in page
        for dotted in mod.SCHEMA.dotted_keys():
            assert f"`{dotted.split('.')[-1]}`" in page, dotted
        for dotted, key in _leaves(mod.SCHEMA, load_config(_bundled(kind))):
            assert f"`{dotted.split('.')[-1]}`" in page, dotted
    for name in ("sgd", "momentum", "adam", "adai", "rmsprop", "sgd-momentum"):
        assert f"`{name}`" in page


def test_bundled_configs_resolve():
    for name in ("fig6", "saddle", "compare", "aeos"):
        cfg = check_config(load_config(name))
        assert check_config(cfg) == cfg  # resolving is idempotent
        tomllib.loads((ROOT / "experiments" / f"{name}.toml").read_text())


def test_readme_names_every_command_and_experiment():
    from escape.cli import cli
    from escape.experiments import available_experiments

    readme = (ROOT / "README.md").read_text()
    for command in cli.commands:
        assert f"`escape {command}" in readme, command
    for name in available_experiments():
        assert f"`{name}`" in readme, name


def test_docs_cite_only_files_the_project_has():
    """Markdown links and project paths in code spans (docs/, experiments/, escape/, tests/, benchmarks/)
    point at files that exist; nothing cites a theory file outside the project."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert "THEORY" not in text and "../shared" not in text, page
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), (page, target)
        for target in re.findall(r"`((?:docs|experiments|escape|tests|benchmarks)/[\w./-]+\.(?:md|toml|py))`", text):
            assert (ROOT / target).exists(), (page, target)
