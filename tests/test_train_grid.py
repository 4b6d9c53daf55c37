"""escape.train.train_grid: each vmapped cell is the run escape.train.train makes of the same configuration (a
reference implementation), one compilation per grid size and optimizer, divergence counted, bad input refused.

One tiny setting (digits, 128 training examples, small_resnet of width 4, batch 32: 4 steps per epoch, two
epochs with the learning rate divided by 10 after the first), so the steps compile once per optimizer.
"""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from _multiprocess import worker_env
from escape.train import train, train_grid, TrainConfig
from escape.train._grid import _grid_step

TINY = dict(data="digits", width=4, batch_size=32, train_examples=128, test_examples=64, epochs=2,
            milestones=(1,), sharpness=False, devices=1)


@pytest.mark.parametrize("optimizer, lrs, wds", [
    ("adai", (1.0, 0.3), (5e-4, 5e-3)),        # L2 inside the optimizer
    ("momentum", (0.1, 0.03), (0.0, 1e-3)),    # L2 chained before it
])
def test_cells_equal_separate_training_runs(optimizer, lrs, wds):
    """Every cell (each its own seed, learning rate and weight decay) against its own train() run: training losses of each epoch and
    final test and training-set losses to round-off (float32; the vmapped convolutions may sum in another
    order), accuracies equal to within one example."""
    seeds = (0, 1)
    base = TrainConfig(optimizer=optimizer, learning_rate=1.0, **TINY)
    grid = train_grid(base, lrs, wds, seeds)
    for i, (lr, wd, seed) in enumerate(zip(lrs, wds, seeds)):
        ref = train(dataclasses.replace(base, learning_rate=lr, weight_decay=wd, seed=seed), progress=False, tensorboard=False)
        np.testing.assert_allclose(grid.train_loss[i], [e["train_loss"] for e in ref.epochs], rtol=2e-5)
        np.testing.assert_allclose(grid.test_loss[i], ref.final["test_loss"], rtol=2e-5)
        np.testing.assert_allclose(grid.train_eval_loss[i], ref.final["train_eval_loss"], rtol=2e-5)
        assert abs(grid.test_acc[i] - ref.final["test_acc"]) <= 1 / 64 + 1e-12
        assert abs(grid.train_eval_acc[i] - ref.final["train_eval_acc"]) <= 1 / 128 + 1e-12
    assert not grid.diverged.any()
    assert len(set(np.round(grid.test_loss, 6))) == 2  # the cells did differ


def test_new_values_reuse_the_compiled_step_and_divergence_is_counted():
    """A second grid of the same size and optimizer with other values compiles nothing; a learning rate of 3e38
    (float32 overflow) diverges and is flagged, its neighbour is not."""
    base = TrainConfig(optimizer="momentum", learning_rate=0.1, **TINY)
    train_grid(base, (0.1, 0.05), (5e-4, 5e-4))
    size = _grid_step._cached._cache_size()
    out = train_grid(base, (3e38, 0.02), (0.0, 1e-4), (3, 4))  # the first overflows float32
    assert _grid_step._cached._cache_size() == size
    assert out.diverged.tolist() == [True, False]


_SHARDED = """
import json, sys
import numpy as np
from escape.train import train_grid, TrainConfig
base = TrainConfig(**json.loads(sys.argv[1]))
args = ((1.0, 0.5, 1.0, 2.0), (5e-4, 5e-4, 0.0, 1e-3), (0, 1, 1, 0))
one, two = train_grid(base, *args, devices=1), train_grid(base, *args, devices=2)
print(json.dumps([float(np.max(np.abs(np.asarray(a, float) - b) / np.maximum(np.abs(np.asarray(b, float)), 1e-30)))
                  for a, b in zip(one, two)]))
"""


def test_cells_sharded_over_two_devices_equal_one_device():
    """Two host devices (what `escape run` uses on 2 cores): four cells sharded two per device equal the same
    cells on one device, every returned number to a relative 1e-5 (each cell's arithmetic is its own; the
    sharding moves whole cells)."""
    cfg = {**TINY, "optimizer": "adai", "learning_rate": 1.0, "milestones": [1]}
    proc = subprocess.run([sys.executable, "-c", _SHARDED, json.dumps(cfg)], env=worker_env(2), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert max(json.loads(proc.stdout.strip().splitlines()[-1])) <= 1e-5


@pytest.mark.parametrize("kwargs, needle", [
    (dict(learning_rates=(), weight_decays=()), "learning_rates is empty"),
    (dict(learning_rates=(0.1, 0.2), weight_decays=(0.0,)), "weight_decays has 1 entries, not 2"),
    (dict(learning_rates=(0.1, -1.0), weight_decays=(0.0, 0.0)), "learning_rates must be finite and > 0"),
    (dict(learning_rates=(0.1,), weight_decays=(-1.0,)), "weight_decays must be finite and >= 0"),
    (dict(learning_rates=(0.1,), weight_decays=(0.0,), seeds=(0, 1)), "seeds must be 1 integers"),
    (dict(learning_rates=(0.1, 0.2, 0.3), weight_decays=(0, 0, 0), devices=2), "devices=2 must divide the 3 cells"),
])
def test_bad_input_is_one_line(kwargs, needle):
    base = TrainConfig(optimizer="sgd", learning_rate=0.1, **TINY)
    with pytest.raises(ValueError, match=needle) as e:
        train_grid(base, **kwargs)
    assert "\n" not in str(e.value)
