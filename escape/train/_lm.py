"""Language modelling on word-level Penn TreeBank (Adai paper App. D.2): the configuration, the jitted BPTT step
with gradient clipping, perplexity, and the resumable loop behind ``escape train --data ptb``.

The streams are the training tokens cut into ``batch_size`` columns ([`escape.data.batchify`][]), walked in
windows of ``bptt`` tokens; the LSTM state is carried from window to window (gradients stop at the window's
edge) and reset at each epoch, as the PyTorch ``word_language_model`` example does. Gradients are clipped to
global norm ``clip`` (``optax.clip_by_global_norm``) before the optimizer, which applies its weight decay in
its own convention ([`escape.train.make_train_optimizer`][]).
"""

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import data as _data
from ..experiments._io import atomic_write_json, atomic_write_text, manifest
from ..models import count_parameters, LSTMLanguageModel
from ._checkpoint import checkpoint_from_bytes, read_checkpoint_files, save_checkpoint
from ._config import _check_ints, _check_reals, _checked_milestones, _fail, _is_real
from ._optimizers import _factory, learning_rate_schedule, make_train_optimizer

LM_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_ppl", "valid_loss", "valid_ppl", "time", "elapsed")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Everything that determines a language-model run; invalid values are a one-line ``ValueError``.

    Attributes:
        data_dir: the directory of ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt``.
        optimizer, learning_rate, weight_decay, optimizer_args, milestones, gamma: as
            [`escape.train.TrainConfig`][]'s.
        epochs: passes over the training streams.
        batch_size: parallel training streams (20 in the PyTorch example).
        eval_batch_size: parallel streams of the validation and test perplexity (10).
        bptt: tokens per truncated-backpropagation window (35).
        embed, hidden, layers: the model's sizes (the paper: 512, 512, 2).
        dropout: the model's dropout rate.
        clip: the global gradient-norm bound (0.25).
        seed: initialisation and dropout masks.
    """

    data_dir: str | None = None
    optimizer: str = "adai"
    learning_rate: float = 1.0
    weight_decay: float = 0.0
    optimizer_args: dict = dataclasses.field(default_factory=dict)
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    epochs: int = 40
    batch_size: int = 20
    eval_batch_size: int = 10
    bptt: int = 35
    embed: int = 512
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.5
    clip: float = 0.25
    seed: int = 0

    def __post_init__(self):
        _check_ints(self, ("epochs", "batch_size", "eval_batch_size", "bptt", "embed", "hidden", "layers"), 1)
        _check_ints(self, ("seed",), 0)
        _check_reals(self, ("learning_rate", "clip", "gamma"))
        _check_reals(self, ("weight_decay",), zero=True)
        if not _is_real(self.dropout) or not 0 <= self.dropout < 1:
            _fail(self, "dropout", "in [0, 1)")
        object.__setattr__(self, "milestones", _checked_milestones(self))
        object.__setattr__(self, "optimizer", _factory(self.optimizer)[0])
        make_train_optimizer(self.optimizer, self.learning_rate, self.weight_decay, **self.optimizer_args)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        return out


def _cross_entropy(logits, targets):
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


@eqx.filter_jit
def _lm_step(model, opt_state, state, x, y, key, optimizer):
    """One BPTT window of every stream: ``(model, opt_state, state, mean token loss)``."""

    def loss_fn(model):
        keys = jax.random.split(key, x.shape[0])
        logits, new = jax.vmap(lambda t, s, k: model(t, s, key=k))(x, state, keys)
        return jnp.mean(_cross_entropy(logits, y)), new

    (loss, new), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
    return eqx.apply_updates(model, updates), opt_state, jax.lax.stop_gradient(new), loss


@eqx.filter_jit
def _lm_eval(model, state, x, y, mask):
    logits, new = jax.vmap(lambda t, s: model(t, s, inference=True))(x, state)
    return jnp.sum(jnp.where(mask, _cross_entropy(logits, y), 0.0)), new


def _batched_state(model, batch: int):
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (batch, *a.shape)), model.initial_state())


def perplexity(model: LSTMLanguageModel, tokens: np.ndarray, *, batch_size: int = 10, bptt: int = 35) -> tuple[float, float]:
    """``(mean token cross-entropy, perplexity)`` of ``tokens`` in inference mode, every target counted once
    (the last window padded and masked)."""
    streams = _data.batchify(tokens, batch_size)
    state, total, count = _batched_state(model, batch_size), 0.0, 0
    for start, length in _data.bptt_windows(streams, bptt):
        x = np.zeros((batch_size, bptt), np.int32)
        y = np.zeros((batch_size, bptt), np.int32)
        x[:, :length] = streams[:, start : start + length]
        y[:, :length] = streams[:, start + 1 : start + 1 + length]
        mask = np.zeros((batch_size, bptt), bool)
        mask[:, :length] = True
        loss, state = _lm_eval(model, state, x, y, mask)
        total += float(loss)
        count += batch_size * length
    mean = total / count
    return mean, math.exp(mean)


def as_lm_config(config: "LMConfig | Mapping") -> LMConfig:
    if isinstance(config, LMConfig):
        return config
    fields = {f.name for f in dataclasses.fields(LMConfig)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ValueError(f"train: unknown language-model setting {unknown[0]!r} (known: {', '.join(sorted(fields))})")
    return LMConfig(**{**config, "milestones": tuple(config.get("milestones", ()))})


def train_lm(config: "LMConfig | Mapping", out=None, *, progress: bool = False,
             corpus: "_data.Corpus | None" = None) -> dict:
    """Train (or resume training) the LSTM language model; return the history
    ``{"config", "info", "epochs", "final", "complete"}`` (what ``metrics.json`` holds).

    With ``out``: ``metrics.json``, ``metrics.csv`` and a checkpoint (model and optimizer state) after every
    epoch, ``manifest.json`` once; rerunning resumes after the last finished epoch (the state restored bit for
    bit; dropout keys are functions of (seed, step)), a finished run is returned as stored, and a directory
    holding another configuration is refused (only ``epochs`` may change).
    """
    config = as_lm_config(config)
    out = None if out is None else Path(out)
    corpus = corpus if corpus is not None else _data.load_ptb(config.data_dir)
    streams = _data.batchify(corpus.train, config.batch_size)
    windows = [w for w in _data.bptt_windows(streams, config.bptt) if w[1] == config.bptt] or \
        [(0, streams.shape[1] - 1)]  # full windows only: one compiled shape
    steps_per_epoch = len(windows)
    schedule = learning_rate_schedule(config.learning_rate, config.milestones, config.gamma, steps_per_epoch)
    optimizer = optax.chain(optax.clip_by_global_norm(config.clip),
                            make_train_optimizer(config.optimizer, schedule, config.weight_decay,
                                                 **config.optimizer_args))
    root = jax.random.key(config.seed)
    model = LSTMLanguageModel(len(corpus.vocabulary), key=jax.random.fold_in(root, 0), embed=config.embed,
                              hidden=config.hidden, layers=config.layers, dropout=config.dropout)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    info = {"vocabulary": len(corpus.vocabulary), "train_tokens": int(len(corpus.train)),
            "valid_tokens": int(len(corpus.valid)), "test_tokens": int(len(corpus.test)),
            "steps_per_epoch": steps_per_epoch, "num_parameters": count_parameters(model),
            "backend": jax.default_backend()}
    history = {"config": config.to_dict(), "info": info, "epochs": [], "final": None, "complete": False}
    if out is not None:
        history = _resume(out, config, history)
        if history["complete"]:
            return history
        if history["epochs"]:
            data, record = read_checkpoint_files(out)
            model, opt_state = checkpoint_from_bytes(data, (model, opt_state), out / record["file"])
        atomic_write_json(out / "manifest.json", manifest({"kind": "language-model", **config.to_dict()}))
    elapsed = history["epochs"][-1]["elapsed"] if history["epochs"] else 0.0
    for epoch in range(len(history["epochs"]), config.epochs):
        t0 = time.perf_counter()
        state, losses = _batched_state(model, config.batch_size), []
        for i, (start, length) in enumerate(windows):
            step = epoch * steps_per_epoch + i
            x = streams[:, start : start + length]
            y = streams[:, start + 1 : start + 1 + length]
            model, opt_state, state, loss = _lm_step(model, opt_state, state, x, y,
                                                     jax.random.fold_in(root, step + 1), optimizer)
            losses.append(loss)
        train_loss = float(np.mean(jax.device_get(losses)))
        valid_loss, valid_ppl = perplexity(model, corpus.valid, batch_size=config.eval_batch_size, bptt=config.bptt)
        seconds = time.perf_counter() - t0
        elapsed += seconds
        row = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch,
               "lr": config.learning_rate * config.gamma ** sum(m <= epoch for m in config.milestones),
               "train_loss": train_loss, "train_ppl": math.exp(min(train_loss, 700.0)), "valid_loss": valid_loss,
               "valid_ppl": valid_ppl, "time": seconds, "elapsed": elapsed}
        history["epochs"].append(row)
        if progress:
            print(f"epoch {epoch + 1}: lr {row['lr']:.3g}, train loss {train_loss:.4f}, valid ppl {valid_ppl:.2f}",
                  flush=True)
        if out is not None:
            save_checkpoint(out, (model, opt_state), {"epoch": epoch + 1, "config": config.to_dict()})
            _write(out, history)
    test_loss, test_ppl = perplexity(model, corpus.test, batch_size=config.eval_batch_size, bptt=config.bptt)
    history["final"] = {"test_loss": test_loss, "test_ppl": test_ppl, "valid_ppl": history["epochs"][-1]["valid_ppl"],
                        "train_time": elapsed}
    history["complete"] = True
    if out is not None:
        _write(out, history)
    return history


def _resume(out: Path, config: LMConfig, fresh: dict) -> dict:
    path = out / "metrics.json"
    if not path.is_file():
        return fresh
    try:
        stored = json.loads(path.read_bytes().decode("utf-8"))
        stored_config = dict(stored["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"train: cannot read {path} ({type(e).__name__}); delete the directory to start afresh") from None
    current = config.to_dict()
    for key in sorted(set(stored_config) | set(current)):
        if key != "epochs" and stored_config.get(key) != current.get(key):
            raise ValueError(f"train: {out} holds a run with {key}={stored_config.get(key)!r}, not "
                             f"{current.get(key)!r}; choose another output directory or delete it")
    if len(stored["epochs"]) > config.epochs:
        raise ValueError(f"train: {out} holds {len(stored['epochs'])} epochs, more than epochs={config.epochs}")
    if stored.get("complete") and len(stored["epochs"]) == config.epochs:
        return stored
    return {**fresh, "epochs": list(stored["epochs"])}


def _write(out: Path, history: dict) -> None:
    atomic_write_json(out / "metrics.json", history)
    lines = [",".join(LM_COLUMNS)] + [",".join(f"{row[c]:.10g}" for c in LM_COLUMNS) for row in history["epochs"]]
    atomic_write_text(out / "metrics.csv", "\n".join(lines) + "\n")


def plot_perplexity(run_dirs, path) -> Path:
    """``path`` (a PNG): validation perplexity against epoch of each language-model run directory (log scale),
    labelled by optimizer and learning rate, the test perplexity in the legend."""
    from ..experiments._plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for i, d in enumerate(run_dirs):
        try:
            h = json.loads((Path(d) / "metrics.json").read_bytes().decode("utf-8"))
            epochs = [r["epoch"] for r in h["epochs"]]
            ppl = [r["valid_ppl"] for r in h["epochs"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"plot: {d} holds no readable language-model metrics.json ({type(e).__name__})") from None
        c = h["config"]
        test = f", test {h['final']['test_ppl']:.2f}" if h.get("final") else ""
        ax.plot(epochs, ppl, "o-", color=f"C{i % 10}", ms=3, label=f"{c['optimizer']} lr {c['learning_rate']:g}{test}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation perplexity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, Path(path))
