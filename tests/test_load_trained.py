"""escape.train.load_trained, History.load and History.to_dataframe (docs/tutorials/checkpoint.md).

One tiny run (digits, 256 training and 100 test examples, small_resnet of width 4, batch 32: 8 steps, one
epoch, no sharpness) is trained once for the whole file.
"""

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from escape.models import forward
from escape.train import EPOCH_COLUMNS, History, load_trained, read_checkpoint_record, train, TrainConfig

TINY = dict(data="digits", width=4, batch_size=32, train_examples=256, test_examples=100, optimizer="adai",
            learning_rate=1.0, epochs=1, sharpness=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    train(TrainConfig(**TINY), out, progress=False, tensorboard=False)
    return out


def test_loaded_state_reproduces_the_recorded_test_metrics(run_dir):
    trainer, ts = load_trained(run_dir)
    assert trainer.config == TrainConfig(**TINY)
    stored = json.loads((run_dir / "metrics.json").read_text())
    row = stored["epochs"][-1]
    loss, acc = trainer.evaluate(ts, trainer.dataset.test)
    # The loaded arrays are bit-identical to the trained ones and evaluation is deterministic: exact equality.
    assert acc == row["test_acc"] == stored["final"]["test_acc"]
    assert loss == pytest.approx(row["test_loss"], rel=1e-6)
    assert int(ts.step) == row["step"] == read_checkpoint_record(run_dir)["step"]
    # A freshly initialised state is not the trained one (the comparison above could fail).
    fresh_loss, _ = trainer.evaluate(trainer.init(), trainer.dataset.test)
    assert abs(fresh_loss - loss) > 1e-3


def test_predictions_with_forward_match_evaluate(run_dir):
    trainer, ts = load_trained(run_dir)
    test = trainer.dataset.test
    logits, _ = forward(ts.model, ts.bn_state, trainer.pipeline(jnp.asarray(test.images)), inference=True)
    assert logits.shape == (len(test.labels), trainer.dataset.num_classes)
    predicted = np.asarray(jnp.argmax(logits, axis=-1))
    _, acc = trainer.evaluate(ts, test)
    assert np.mean(predicted == test.labels) == pytest.approx(acc, abs=1e-12)


def test_load_trained_errors(run_dir, tmp_path):
    with pytest.raises(ValueError, match="has no checkpoint"):
        load_trained(tmp_path)
    with pytest.raises(ValueError, match="cannot override 'width'"):
        load_trained(run_dir, overrides={"width": 8})
    trainer, _ = load_trained(run_dir, overrides={"devices": 1, "eval_batch_size": 50})
    assert trainer.config.eval_batch_size == 50 and len(trainer.devices) == 1


def test_history_load_and_dataframe(run_dir, tmp_path):
    history = History.load(run_dir)
    assert history.complete and history.config == TrainConfig(**TINY).to_dict()
    df = history.to_dataframe()
    assert list(df.columns) == list(EPOCH_COLUMNS)
    assert len(df) == TINY["epochs"] and df["epoch"].tolist() == [1]
    csv = pd.read_csv(run_dir / "metrics.csv")
    assert list(csv.columns) == list(df.columns)
    np.testing.assert_allclose(df.to_numpy(float), csv.to_numpy(float), rtol=1e-9)
    assert df.loc[0, "test_acc"] == history.final["test_acc"]
    # Extra keys go after the standard columns; an empty history is an empty table with the columns.
    extended = History(config={}, epochs=[{**history.epochs[0], "grad_norm": 1.5}])
    assert list(extended.to_dataframe().columns) == [*EPOCH_COLUMNS, "grad_norm"]
    empty = History(config={}).to_dataframe()
    assert empty.empty and list(empty.columns) == list(EPOCH_COLUMNS)
    with pytest.raises(ValueError, match="does not exist"):
        History.load(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        History.load(tmp_path)
