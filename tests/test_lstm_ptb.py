"""Language modelling: the PTB reader's errors (one line naming the file), the LSTM's parameter count against
its formula and PyTorch's, training on a generated corpus with a known entropy through `escape train --data
ptb` (loss falls, perplexity reported, resumption)."""

import json
import math

import jax
import numpy as np
import pytest

from escape.cli import main
from escape.data import batchify, bptt_windows, load_ptb
from escape.models import count_parameters, LSTMLanguageModel, lstm_parameter_count

V = 30
STEP = np.array([1, 2, 3])
PROB = np.array([0.6, 0.3, 0.1])


def _corpus(tmp_path, lines=(600, 80, 80)):
    """A Markov chain over V words: each word is followed by the next, the one after or the third with
    probabilities 0.6 / 0.3 / 0.1, lines of 5-14 words (entropy 0.90 nats per transition)."""
    tmp_path.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "valid", "test"), lines):
        text = []
        for _ in range(n):
            w, words = int(rng.integers(V)), []
            for _ in range(int(rng.integers(5, 15))):
                words.append(f"w{w}")
                w = (w + int(rng.choice(STEP, p=PROB))) % V
            text.append(" ".join(words))
        (tmp_path / f"ptb.{split}.txt").write_text("\n".join(text) + "\n")
    return tmp_path


def test_reader_vocabulary_and_batches(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "ptb.train.txt").write_text("a b c\n\nb a\n")
    (d / "ptb.valid.txt").write_text("c a\n")
    (d / "ptb.test.txt").write_text(" b \n")
    c = load_ptb(d)
    assert c.vocabulary == ("a", "b", "c", "<eos>")
    assert c.train.tolist() == [0, 1, 2, 3, 1, 0, 3] and c.valid.tolist() == [2, 0, 3] and c.test.tolist() == [1, 3]
    s = batchify(np.arange(11), 3)
    assert s.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert bptt_windows(batchify(np.arange(30), 2), 4) == [(0, 4), (4, 4), (8, 4), (12, 2)]


@pytest.mark.parametrize("setup, needle", [
    (lambda d: None, "ptb.train.txt not found"),
    (lambda d: (d / "ptb.train.txt").write_bytes(b"a b\n\xff\xfe\n"), r"ptb.train.txt is not UTF-8 text \(line 2"),
    (lambda d: (d / "ptb.train.txt").write_text("\n  \n"), "ptb.train.txt holds no words"),
    (lambda d: [(d / "ptb.train.txt").write_text("a b\n"), (d / "ptb.valid.txt").write_text("a\nb zz\n")],
     "ptb.valid.txt line 2: word 'zz' is not in the training vocabulary"),
    (lambda d: [(d / "ptb.train.txt").write_text("a b\n"), (d / "ptb.valid.txt").write_text("a\n"),
                (d / "ptb.test.txt").mkdir()], "cannot read .*ptb.test.txt"),
])
def test_reader_errors_are_one_line_naming_the_file(tmp_path, setup, needle):
    setup(tmp_path)
    with pytest.raises(ValueError, match=needle) as e:
        load_ptb(tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="is not a directory"):
        load_ptb(tmp_path / "missing")


def test_parameter_count():
    """Against the formula, and the paper's model (V 10000, 512, 512, 2 layers) against PyTorch's count
    (nn.Embedding + nn.LSTM(512, 512, 2) with its two biases per gate + nn.Linear), less our one bias."""
    m = LSTMLanguageModel(101, key=jax.random.key(0), embed=7, hidden=5, layers=3)
    assert count_parameters(m) == lstm_parameter_count(101, 7, 5, 3) == 101 * 7 + 4 * 5 * (7 + 5 + 1) + 2 * 4 * 5 * (5 + 5 + 1) + 5 * 101 + 101
    torch_count = 10000 * 512 + 2 * (4 * 512 * (512 + 512) + 2 * 4 * 512) + 512 * 10000 + 10000
    assert torch_count == 14_452_496
    assert lstm_parameter_count(10000, 512, 512, 2) == torch_count - 2 * 4 * 512 == 14_448_400


def test_escape_train_ptb_learns_and_resumes(tmp_path, capsys):
    data = _corpus(tmp_path / "ptb")
    out = tmp_path / "run"
    args = ["train", "--data", "ptb", "--data-dir", str(data), "--optimizer", "adam", "--lr", "3e-3",
            "--batch-size", "10", "--bptt", "10", "--embed", "16", "--hidden", "32", "--dropout", "0.1",
            "--out", str(out), "--quiet"]
    main([*args, "--epochs", "2"])
    main([*args, "--epochs", "4"])  # resumes after epoch 2
    printed = capsys.readouterr().out
    history = json.loads((out / "metrics.json").read_text())
    rows = history["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and history["complete"]
    losses = [r["train_loss"] for r in rows]
    assert all(b < a for a, b in zip(losses, losses[1:]))  # the loss falls every epoch
    unigram = math.exp(-np.mean(np.log(np.bincount(load_ptb(data).train) / len(load_ptb(data).train))
                                [load_ptb(data).test]))
    test_ppl = history["final"]["test_ppl"]
    assert math.isfinite(test_ppl) and test_ppl < 0.4 * unigram  # the model uses the context
    assert test_ppl > math.exp(0.898)  # and cannot beat the chain's entropy
    assert f"test perplexity {test_ppl:.2f}" in printed
    assert (out / "metrics.csv").read_text().startswith("epoch,step,lr,train_loss,train_ppl,valid_loss,valid_ppl")
    # A different configuration in the same directory is refused in one line.
    with pytest.raises(SystemExit) as e:
        main([*[("1e-2" if a == "3e-3" else a) for a in args], "--epochs", "4"])
    assert e.value.code == 2 and "holds a run with learning_rate=0.003" in capsys.readouterr().err


@pytest.mark.parametrize("extra, needle", [
    (["--width", "4"], "--width is for image data"),
    (["--bptt", "0"], "bptt must be an integer >= 1"),
    (["--clip", "-1"], "clip must be a number > 0"),
    (["--dropout", "1.5"], "dropout must be in [0, 1)"),
])
def test_bad_input_exits_2(tmp_path, capsys, extra, needle):
    data = _corpus(tmp_path / "ptb", lines=(30, 5, 5))
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "ptb", "--data-dir", str(data), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1
