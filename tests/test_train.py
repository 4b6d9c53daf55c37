"""escape.train: schedule and weight-decay conventions, exact resumption, 4-device data parallelism, checkpoint
errors, the `escape train` command.

Every training run here uses one tiny setting (digits, 256 training examples, small_resnet of width 4, batch
32: 8 steps per epoch; learning rate divided by 10 after epoch 1), so the jitted steps compile once for the
whole file.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.cli import main
from escape.train import (
    build_optimizer,
    load_checkpoint,
    make_train_optimizer,
    train,
    TrainConfig,
    Trainer,
)

TINY = dict(data="digits", width=4, batch_size=32, train_examples=256, test_examples=100, optimizer="adai",
            learning_rate=1.0, weight_decay=5e-4, milestones=(1,), sharpness=False)
_METRICS = ("step", "lr", "train_loss", "train_acc", "test_loss", "test_acc")  # all but the wall times


def _updates(opt, grads, params, steps):
    state = opt.init(params)
    out = []
    for _ in range(steps):
        u, state = opt.update(grads, state, params)
        out.append(u)
    return out


def test_schedule_milestones_apply_at_epoch_boundaries():
    """lr 1, milestones after epochs 1 and 2, gamma 0.1, 3 steps per epoch: plain SGD's updates of a unit
    gradient are the learning rate of each step."""
    cfg = TrainConfig(optimizer="sgd", learning_rate=1.0, milestones=(1, 2), gamma=0.1, epochs=3)
    opt, schedule = build_optimizer(cfg, steps_per_epoch=3)
    p = jnp.zeros(2)
    steps = [float(-u[0]) for u in _updates(opt, jnp.ones(2), p, 9)]
    np.testing.assert_allclose(steps, [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01], rtol=1e-6)
    assert build_optimizer(cfg, steps_per_epoch=3)[0] is opt  # cached: seeds share the compiled step


def test_weight_decay_conventions():
    """With a zero gradient only the decay acts. Decoupled (adamw, adaiw): -eta lambda theta. L2 (adam): the
    decay is a gradient, which Adam normalises to a step of size eta. L2 (sgd): -eta lambda theta."""
    theta, zero, eta, lam = jnp.array([2.0, -4.0]), jnp.zeros(2), 0.1, 0.01
    adamw = make_train_optimizer("adamw", eta, lam)
    np.testing.assert_allclose(_updates(adamw, zero, theta, 1)[0], -eta * lam * theta, rtol=1e-6)
    adaiw = make_train_optimizer("adaiw", eta, lam)
    np.testing.assert_allclose(_updates(adaiw, zero, theta, 1)[0], -eta * lam * theta, rtol=1e-6)
    adam = make_train_optimizer("adam", eta, lam)
    np.testing.assert_allclose(_updates(adam, zero, theta, 1)[0], -eta * jnp.sign(theta), rtol=1e-5)
    sgd = make_train_optimizer("sgd", eta, lam)
    np.testing.assert_allclose(_updates(sgd, zero, theta, 1)[0], -eta * lam * theta, rtol=1e-6)
    # sgd-momentum is the registry's SGD-style heavy ball: m <- 0.9 m + g, step -eta m.
    mom = make_train_optimizer("sgd-momentum", eta, 0.0)
    u = _updates(mom, jnp.ones(2), theta, 2)
    np.testing.assert_allclose(u[1], -eta * 1.9 * jnp.ones(2), rtol=1e-6)
    # Any optax optimizer by name; unknown names and hyperparameters are one-line errors.
    assert isinstance(make_train_optimizer("lion", 1e-3, 0.1), optax.GradientTransformation)
    with pytest.raises(ValueError, match="unknown optimizer 'nope'"):
        make_train_optimizer("nope", 0.1)
    with pytest.raises(ValueError, match="no hyperparameter 'beta9'"):
        make_train_optimizer("adai", 0.1, beta9=1)


@pytest.mark.parametrize(
    "change,needle",
    [
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(milestones=(3, 2)), "milestones"),
        (dict(milestones=(5,), epochs=5), "milestones"),
        (dict(data="mnist"), "data"),
        (dict(model="vgg8"), "model"),
        (dict(data="cifar10"), "data_dir"),
        (dict(batch_size=0), "batch_size"),
        (dict(optimizer="adai", optimizer_args={"beta2": 1.5}), "beta2"),
        (dict(bf16=1), "bf16"),
    ],
)
def test_config_validation(change, needle):
    with pytest.raises(ValueError, match=needle) as e:
        TrainConfig(**{**TINY, **change})
    assert "\n" not in str(e.value)


def test_resume_from_checkpoint_is_exact(tmp_path):
    """Stop after epoch 1 of 3 and resume: the later epochs' metrics and the final state are bit-identical to
    an uninterrupted run's (the state is restored exactly; data order, augmentation and schedule are functions
    of seed, epoch and step)."""
    cfg = TrainConfig(**{**TINY, "epochs": 3})
    full = train(cfg, tmp_path / "full", progress=False)
    part = train(cfg, tmp_path / "part", progress=False, stop_after=1)
    assert len(part.epochs) == 1 and not part.complete
    assert json.loads((tmp_path / "part" / "checkpoint.json").read_text())["epoch"] == 1
    resumed = train(cfg, tmp_path / "part", progress=False)
    assert resumed.complete and len(resumed.epochs) == 3
    for a, b in zip(full.epochs, resumed.epochs):
        assert {k: a[k] for k in _METRICS} == {k: b[k] for k in _METRICS}
    assert full.final["test_loss"] == resumed.final["test_loss"]
    assert full.final["train_eval_loss"] == resumed.final["train_eval_loss"]
    # The milestone after epoch 1 applies from epoch 2 on (the resumed part: the schedule's count is restored).
    np.testing.assert_allclose(full.column("lr"), [1.0, 0.1, 0.1])
    # Final checkpoints: same arrays, bit for bit (the .eqx files are the raw arrays in leaf order).
    files = [d / json.loads((d / "checkpoint.json").read_text())["file"] for d in (tmp_path / "full", tmp_path / "part")]
    assert files[0].read_bytes() == files[1].read_bytes()
    ts = Trainer(cfg).init()
    restored, record = load_checkpoint(tmp_path / "part", ts)
    assert record["epoch"] == 3 and int(restored.step) == 24
    # metrics.csv has one row per epoch; a finished run is returned as stored.
    assert len((tmp_path / "part" / "metrics.csv").read_text().strip().splitlines()) == 4
    assert train(cfg, tmp_path / "part", progress=False).epochs == resumed.epochs
    # Another configuration in the same directory is refused; a corrupt checkpoint is reported.
    with pytest.raises(ValueError, match="seed=0, not 1"):
        train(TrainConfig(**{**TINY, "epochs": 3, "seed": 1}), tmp_path / "part")
    ckpt = tmp_path / "part" / json.loads((tmp_path / "part" / "checkpoint.json").read_text())["file"]
    ckpt.write_bytes(ckpt.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="checksum"):
        load_checkpoint(tmp_path / "part", ts)


_FOUR_DEVICES = textwrap.dedent(
    """
    import json, sys, jax
    from escape.train import train, TrainConfig
    assert jax.device_count() == 4
    h = train(TrainConfig(**json.loads(sys.argv[1])), progress=False)
    assert len(h.info["devices"]) == 4
    print(json.dumps(h.epochs))
    """
)


def test_data_parallel_four_devices_matches_one():
    """The same run on 4 host devices (batch sharded, state replicated) and on 1 device.

    Tolerance: relative 1e-5 on the per-epoch mean losses (train and test). Sharding changes only the order of
    the float32 reductions over the batch (BatchNorm statistics, loss, gradients), a few ulps (~1e-7 relative)
    per step; over the 16 steps here the losses were measured to differ by at most 8e-7 relative (4 and 2
    devices against 1), so 1e-5 leaves a factor 10. Accuracies count argmax decisions, which such
    differences could flip only at a near-tie: they must agree to one example (measured: identical).
    """
    cfg = {**TINY, "epochs": 2}
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _FOUR_DEVICES, json.dumps(cfg)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    four = json.loads(out.stdout.strip().splitlines()[-1])
    one = train(TrainConfig(**cfg, devices=1), progress=False).epochs
    for a, b in zip(one, four):
        np.testing.assert_allclose([a["train_loss"], a["test_loss"]], [b["train_loss"], b["test_loss"]], rtol=1e-5)
        assert abs(a["train_acc"] - b["train_acc"]) * 256 <= 1 and abs(a["test_acc"] - b["test_acc"]) * 100 <= 1


def _run_main(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lr", "-1"], "learning_rate"),
        (["--optimizer", "lion2"], "lion2"),
        (["--data", "cifar10"], "data-dir"),
        (["--data", "cifar100", "--data-dir", "/nonexistent/cifar"], "cifar-100-python"),
        (["--milestones", "5,x"], "milestones"),
        (["--milestones", "40"], "milestones"),
        (["--batch-size", "abc"], "batch-size"),
        (["--opt", "beta0"], "KEY=VALUE"),
        (["--opt", "beta2=2"], "beta2"),
        (["--opt", "beta0=abc"], "beta0 must be a number"),
        (["--opt", "beta_0=0.1"], "did you mean 'beta0'"),
        (["--optimizer", "adia"], "did you mean 'adai'"),
        (["--optimizer", "lion", "--opt", "b1=abc"], "b1 must be a number"),
        (["--optimizer", "sgd", "--opt", "beta=0.9"], "takes none besides learning_rate"),
        (["--epochs", "0"], "epochs"),
        (["--model", "vgg"], "model"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, needle, tmp_path, capsys):
    code, err = _run_main(["train", "--out", str(tmp_path / "o"), "--no-compilation-cache", *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escape: error:") and needle in lines[0], err


def test_cli_trains_and_resumes(tmp_path, capsys):
    """`escape train` writes the run directory (files readable by others under umask 022, a manifest); a second
    call with more epochs resumes from the checkpoint and says so."""
    out = tmp_path / "run"
    old_umask = os.umask(0o022)
    try:
        _train_and_resume(out, capsys)
    finally:
        os.umask(old_umask)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 5
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o644, (p, oct(p.stat().st_mode))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["optimizer"] == "adai" and manifest["config"]["epochs"] == 3
    # resolved: what the run's None fields and defaults meant
    assert manifest["config"]["model"] == "small_resnet" and manifest["config"]["augment"] is False
    assert manifest["config"]["optimizer_args"] == {"beta0": 0.1, "beta2": 0.99, "eps": 1e-3}
    assert manifest["versions"]["jax"] == jax.__version__ and manifest["commit"]


def _train_and_resume(out, capsys):
    argv = ["train", "--out", str(out), "--optimizer", "Adai", "--lr", "1.0", "--weight-decay", "5e-4",
            "--width", "4", "--batch-size", "32", "--train-examples", "256", "--test-examples", "100",
            "--milestones", "1", "--no-sharpness",
            "--no-compilation-cache", "--no-progress"]
    main([*argv, "--epochs", "2"])
    assert "epoch   2" in capsys.readouterr().out
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 2
    main([*argv[:-1], "--log", "--epochs", "3"])
    captured = capsys.readouterr()
    printed = captured.out
    assert "epoch   3" in printed and "metrics.csv" in printed
    assert f"resuming {out}: 2 of 3 epochs done" in captured.err
    assert "[3/3] adai seed 0 epoch 3: lr 0.1, train loss" in captured.err
    history = json.loads((out / "metrics.json").read_text())
    assert history["complete"] and [r["epoch"] for r in history["epochs"]] == [1, 2, 3]


def test_bf16_training_keeps_float32_state():
    """bf16 compute: parameters, optimizer state and losses stay float32; the sharpness model computes in float32."""
    cfg = TrainConfig(**{**TINY, "bf16": True, "train_examples": 64, "epochs": 1, "milestones": ()})
    trainer = Trainer(cfg)
    ts, row = trainer.train_epoch(trainer.init(), 0)
    assert ts.model.compute_dtype == jnp.bfloat16 and np.isfinite(row["train_loss"])
    floats = [x for x in jax.tree.leaves((ts.model, ts.opt_state)) if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and all(x.dtype == jnp.float32 for x in floats)
    assert trainer._float32_model(ts.model).compute_dtype is None
