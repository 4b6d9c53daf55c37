"""The aeos experiment: the tracker against a quadratic's exact curvature, the entry rule, and a tiny run
through `escape run` (tables, figures, resume per run, bad input)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from escape.cli import main
from escape.stability._track import edge_summary, track_sharpness

TINY = """
name = "aeos-tiny"
kind = "aeos"
[data]
n_examples = 120
[model]
width = 12
[run]
steps = 40
every = 20
top_k = 2
[runs.adam]
optimizer = "adam"
learning_rate = 1e-3
[runs.gd]
optimizer = "gd"
learning_rate = 0.05
[runs.frozen]
optimizer = "frozen-adam"
learning_rate = 1e-3
from_step = 20
"""


def test_tracker_measures_a_quadratics_curvature_exactly():
    """On L = theta' A theta / 2 the raw sharpness is lambda_max(A) at every measurement, and with a fixed P the
    preconditioned one is lambda_max(P^-1/2 A P^-1/2)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
        a = q @ np.diag(np.linspace(0.5, 4.0, 8)) @ q.T
        p = rng.uniform(0.5, 2.0, 8)
        loss = lambda th: 0.5 * th @ jnp.asarray(a) @ th
        traj = track_sharpness(loss, jnp.asarray(rng.standard_normal(8)), optax.sgd(0.1), steps=30, every=10,
                               key=jax.random.key(0), precondition=lambda s, g: jnp.asarray(p), k=2, tol=1e-10)
        s = 1 / np.sqrt(p)
        want = np.linalg.eigvalsh(s[:, None] * a * s[None, :])[::-1][:2]
        assert list(traj.step) == [0, 10, 20, 30] and not traj.diverged
        np.testing.assert_allclose(traj.raw, 4.0, rtol=1e-8)
        np.testing.assert_allclose(traj.preconditioned, np.tile(want, (4, 1)), rtol=1e-8)
        assert np.all(np.diff(traj.loss) < 0)  # GD well below its line descends


def test_entry_rule():
    ratio = np.array([3.0, 0.5, 0.7, 0.95, 1.1, 0.9, 1.0])  # an adaptive warm-up at the start
    raw = np.arange(7.0)
    s = edge_summary(ratio, raw, skip=1)
    assert s["reached"] and s["entry_index"] == 3 and s["ratio_median"] == pytest.approx(0.975)
    assert s["raw_sharpness_at_entry"] == 3.0 and s["raw_sharpness_final"] == 6.0
    assert edge_summary(ratio, raw)["entry_index"] == 3  # a start above the line, then below: enters on the rise
    assert edge_summary(np.array([1.0, 0.99, 1.01]), raw[:3])["entry_index"] == 0  # started on the line, stayed
    assert edge_summary(np.array([0.5, 1.0, 0.99]), raw[:3], skip=2)["entry_index"] == 2
    assert not edge_summary(np.array([0.1, 0.5]), raw[:2])["reached"]


def test_tiny_run_tables_figures_and_resume(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    main(["run", str(path), "--out", str(out), "--quiet"])
    table = pd.read_csv(out / "aeos.csv")
    assert list(table["optimizer"]) == ["adam", "gd", "frozen"]
    for col in ("optimizer", "learning_rate", "beta1", "beta2", "threshold", "ratio_median",
                "raw_sharpness_at_entry", "raw_sharpness_final", "final_loss", "reached"):
        assert col in table
    assert table.set_index("optimizer").loc["gd", "threshold"] == pytest.approx(40.0)
    assert table.set_index("optimizer").loc["adam", "threshold"] == pytest.approx(3.8e4)
    curves = pd.read_csv(out / "curves.csv")
    assert len(curves) == 9 and {"preconditioned_1", "preconditioned_2", "raw_sharpness"} <= set(curves)
    gd = curves[curves["optimizer"] == "gd"]
    np.testing.assert_allclose(gd["preconditioned_1"], gd["raw_sharpness"], rtol=1e-3)  # P = I
    for name in ("aeos.png", "aeos_raw.png", "manifest.json"):
        assert (out / name).stat().st_size > 0
    expected = (out / "aeos.csv").read_text()
    (out / "cells" / "gd.npz").unlink()
    capsys.readouterr()
    main(["run", str(path), "--out", str(out), "--log"])
    err = capsys.readouterr().err
    assert f"resuming {out}: 2 of 3 runs done" in err and "[3/3] gd: gd eta 0.05" in err
    assert (out / "aeos.csv").read_text() == expected
    with pytest.raises(SystemExit) as e:
        main(["plot", str(out), "--against", str(out)])
    assert e.value.code == 2 and "compares escape-rate runs" in capsys.readouterr().err


@pytest.mark.parametrize("edit,needle", [
    (('optimizer = "adam"', 'optimizer = "adamw"'), "runs.adam.optimizer"),
    (("from_step = 20\n", ""), "runs.frozen.from_step is missing"),
    (("[data]\n", '[data]\nname = "cifar10"\n'), "data.data_dir is missing"),
    (("learning_rate = 0.05", "learning_rate = -0.05"), "runs.gd.learning_rate"),
    (("[runs.adam]\n", "[runs.adam]\nb1 = 1.0\n"), "runs.adam.b1"),
    (("every = 20", "evry = 20"), "did you mean 'run.every'"),
])
def test_bad_config_exits_2(edit, needle, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    assert TINY.count(edit[0]) == 1
    path.write_text(TINY.replace(*edit))
    with pytest.raises(SystemExit) as e:
        main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()


def test_cifar10_first_images_from_a_users_files(tmp_path, capsys):
    """data.name = "cifar10" reads the first n training images of the standard python files (generated here),
    flattened and standardised; a directory without the files is a one-line error before anything is written."""
    from test_data import _make_cifar10

    from escape.experiments import apply_overrides, check_config, load_config
    from escape.experiments._aeos import load_data

    train_x, train_y, _, _ = _make_cifar10(tmp_path / "cifar", sizes=(6, 6, 6, 6, 6))
    cfg = check_config(apply_overrides(load_config("aeos"), ["data.name=cifar10", f"data.data_dir={tmp_path / 'cifar'}",
                                                             "data.n_examples=20"]))
    x, y = load_data(cfg)
    assert x.shape == (20, 3072) and y.shape == (20, 10)
    want = train_x[:20].astype(np.float64)
    std = want.std(axis=0)
    np.testing.assert_allclose(np.asarray(x), (want - want.mean(0)) / np.where(std > 0, std, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(np.asarray(y), axis=1), train_y[:20])
    path = tmp_path / "c.toml"
    path.write_text(TINY.replace("[data]\n", f'[data]\nname = "cifar10"\ndata_dir = "{tmp_path / "nowhere"}"\n'))
    with pytest.raises(SystemExit) as e:
        main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "data.data_dir" in err[0] and "not found" in err[0]
    assert not (tmp_path / "o").exists()
