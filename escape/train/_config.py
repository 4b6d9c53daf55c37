"""Training configuration: [`escape.train.TrainConfig`][], validated at construction (its optimizer is built once
to check the name and hyperparameters: ``_optimizers``), the data sets and models it may name."""

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any


from .. import models as _models
from ._optimizers import _factory, make_train_optimizer

DATASETS = ("digits", "cifar10", "cifar100")
MODELS = {
    name: getattr(_models, name)
    for name in (
        "small_resnet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "vgg11", "vgg13", "vgg16", "vgg19", "densenet121", "googlenet",
    )
}
"""Model constructors by name: ``(num_classes, *, key, in_channels, width, compute_dtype) -> (model, state)``."""
_DEFAULT_MODEL = {"digits": "small_resnet", "cifar10": "resnet18", "cifar100": "resnet18"}


# --------------------------------------------------------------------------------------------- configuration


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _fail(config, field: str, what: str):
    _raise(f"train: {field} must be {what}, got {getattr(config, field)!r}")


def _check_ints(config, fields, low: int) -> None:
    """Each of ``fields`` of ``config`` an integer >= ``low`` (the one-line error of every training config)."""
    for field in fields:
        if not _is_int(getattr(config, field)) or getattr(config, field) < low:
            _fail(config, field, f"an integer >= {low}")


def _check_reals(config, fields, *, zero: bool = False) -> None:
    """Each of ``fields`` a finite number > 0 (>= 0 with ``zero``)."""
    for field in fields:
        value = getattr(config, field)
        if not _is_real(value) or not (value >= 0 if zero else value > 0):
            _fail(config, field, "a number >= 0" if zero else "a number > 0")


def _checked_milestones(config) -> tuple[int, ...]:
    """``config.milestones`` as a tuple of increasing epochs in 1..epochs-1."""
    milestones = config.milestones
    if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
        _fail(config, "milestones", "a sequence of epochs")
    milestones = tuple(milestones)
    if not all(_is_int(m) for m in milestones) or any(b <= a for a, b in zip(milestones, milestones[1:])):
        _fail(config, "milestones", "increasing integers")
    if milestones and not (milestones[0] >= 1 and milestones[-1] <= config.epochs - 1):
        _raise(f"train: milestones must lie in 1..epochs-1 = 1..{config.epochs - 1} (a milestone at or after the "
               f"last epoch never applies), got {list(milestones)}")
    return tuple(int(m) for m in milestones)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and nothing about where it is written).

    Invalid values raise a one-line ``ValueError`` naming the field at construction.

    Attributes:
        data: ``"digits"`` (scikit-learn's 8x8 digits, bundled), ``"cifar10"`` or ``"cifar100"`` (python-pickle
            files in ``data_dir``, see [`escape.data.load_cifar10`][]).
        model: ``"small_resnet"``, ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"``,
            ``"resnet152"``, ``"vgg11"``, ``"vgg13"``, ``"vgg16"``, ``"vgg19"``, ``"densenet121"`` or
            ``"googlenet"`` (see ``docs/api/models.md``); ``None``: ``small_resnet`` for digits, ``resnet18``
            for CIFAR.
        optimizer: ``adai``, ``adaiw``, ``sgd``, ``momentum`` (aliases ``sgd-momentum``, ``heavy-ball``),
            ``momentum-ema``, ``adam``, ``adamw``, ``rmsprop`` (the `escape.optim` registry, case-insensitive),
            or the name of any optax optimizer taking ``learning_rate`` (``lamb``, ``lion``, ``nadam``, ...).
            Stored as the canonical name (``"SGD-Momentum"`` becomes ``"momentum"``).
        learning_rate: initial learning rate ``> 0``.
        weight_decay: ``>= 0``. Passed to optimizers that take a ``weight_decay`` argument, in their convention
            (L2 for ``adai``; decoupled for ``adaiw`` and ``adamw``, multiplied by the learning rate as in
            PyTorch); for every other optimizer it is L2, ``g <- g + weight_decay * theta`` before the
            optimizer. Applied to every parameter, BatchNorm included (PyTorch's default).
        milestones: epochs (``1 .. epochs - 1``, increasing) after which the learning rate is multiplied by
            ``gamma``: epoch ``e`` (0-based) uses ``learning_rate * gamma ** (number of milestones <= e)``.
        gamma: the factor of each milestone, ``> 0``.
        optimizer_args: further hyperparameters of the optimizer (``{"beta0": 0.1}``, ``{"b1": 0.95}``).
        epochs: number of epochs ``>= 1``.
        batch_size: training mini-batch size; a multiple of the number of devices. The last partial batch of
            every epoch is dropped.
        seed: seeds the initialisation, the data order and the augmentation.
        bf16: run convolutions and activations in bfloat16 (parameters, gradients and optimizer state stay
            float32; see [`escape.models.resnet18`][]'s ``compute_dtype``).
        data_dir: the directory of the CIFAR files (required for CIFAR; unused for digits).
        width: model width (``None``: the model's default, 16 for ``small_resnet``, 64 for the ResNets, the
            VGGs and GoogLeNet, 32, the growth rate, for ``densenet121``).
        augment: pad-4 random crop and horizontal flip of the training images; ``None``: on for CIFAR, off for
            digits (flipping or shifting an 8x8 digit by 4 pixels destroys it).
        eval_batch_size: batch size of evaluation and of the curvature loss (a multiple of the devices).
        train_examples: train on the first ``n`` training examples only (quick runs and tests); ``None``: all.
        test_examples: evaluate on the first ``n`` test examples only; ``None``: all.
        devices: number of local devices to shard the batch over; ``None``: all of them. In a multi-process run
            (``jax.distributed``) every device of every process is used: ``None`` or this process's count.
        sharpness: measure the sharpness of the solution after training.
        sharpness_examples: size of the fixed random subset of the training set (chosen with seed 0, the same
            for every run) on which the sharpness is measured; ``None``: the whole training set.
        lanczos_iters: Lanczos steps for the top Hessian eigenvalue(s).
        top_eigenvalues: how many of the largest Hessian eigenvalues to record at the solution (``1``: only
            ``lambda_max``; ``k > 1`` runs block-free Lanczos for the top ``k``, ``k <= lanczos_iters``).
        hutchinson_samples: Rademacher probes for the Hessian trace (``>= 2``).
        sharpness_sigma: standard deviation of the weight noise of the expected sharpness.
        sharpness_samples: antithetic noise draws for the expected sharpness (``>= 2``).
    """

    data: str = "digits"
    model: str | None = None
    optimizer: str = "adai"
    learning_rate: float = 0.1
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    optimizer_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 64
    seed: int = 0
    bf16: bool = False
    data_dir: str | None = None
    width: int | None = None
    augment: bool | None = None
    eval_batch_size: int = 500
    train_examples: int | None = None
    test_examples: int | None = None
    devices: int | None = None
    sharpness: bool = True
    sharpness_examples: int | None = None
    lanczos_iters: int = 20
    top_eigenvalues: int = 1
    hutchinson_samples: int = 20
    sharpness_sigma: float = 0.01
    sharpness_samples: int = 16

    def __post_init__(self):
        fail = lambda field, what: _fail(self, field, what)  # noqa: E731
        if self.data not in DATASETS:
            fail("data", f"one of {', '.join(DATASETS)}")
        if self.model is not None and self.model not in MODELS:
            fail("model", f"one of {', '.join(MODELS)}")
        if self.data != "digits" and not self.data_dir:
            _raise(f"train: data {self.data!r} needs data_dir (--data-dir), a directory with the CIFAR python files")
        _check_ints(self, ("epochs", "batch_size", "eval_batch_size", "lanczos_iters"), 1)
        if not _is_int(self.top_eigenvalues) or not 1 <= self.top_eigenvalues <= self.lanczos_iters:
            fail("top_eigenvalues", f"an integer in [1, lanczos_iters = {self.lanczos_iters}]")
        _check_ints(self, ("hutchinson_samples", "sharpness_samples"), 2)
        for field in ("width", "train_examples", "test_examples", "devices", "sharpness_examples"):
            value = getattr(self, field)
            if value is not None and (not _is_int(value) or value < 1):
                fail(field, "None or an integer >= 1")
        _check_ints(self, ("seed",), 0)
        _check_reals(self, ("learning_rate", "gamma", "sharpness_sigma"))
        _check_reals(self, ("weight_decay",), zero=True)
        for field in ("bf16", "sharpness"):
            if not isinstance(getattr(self, field), bool):
                fail(field, "True or False")
        if self.augment is not None and not isinstance(self.augment, bool):
            fail("augment", "None, True or False")
        object.__setattr__(self, "milestones", _checked_milestones(self))
        if not isinstance(self.optimizer_args, Mapping):
            fail("optimizer_args", "a mapping of hyperparameter names to values")
        object.__setattr__(self, "optimizer_args", dict(self.optimizer_args))
        object.__setattr__(self, "optimizer", _factory(self.optimizer)[0])
        # Build the optimizer once now, so that a bad name or hyperparameter fails before any work.
        make_train_optimizer(self.optimizer, self.learning_rate, self.weight_decay, **self.optimizer_args)

    @property
    def model_name(self) -> str:
        return self.model if self.model is not None else _DEFAULT_MODEL[self.data]

    @property
    def augmented(self) -> bool:
        return self.augment if self.augment is not None else self.data != "digits"

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples as lists); ``TrainConfig.from_dict`` inverts it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, mapping: Mapping) -> "TrainConfig":
        """Build from a mapping; unknown keys are a one-line ``ValueError`` listing the accepted ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in mapping if k not in names]
        if unknown:
            raise ValueError(f"train: unknown setting {unknown[0]!r} (accepted: {', '.join(names)})")
        return cls(**mapping)


def _raise(message: str):
    raise ValueError(message)


def as_config(config: "TrainConfig | Mapping") -> TrainConfig:
    """A [`escape.train.TrainConfig`][] from itself or from a mapping of its fields."""
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, Mapping):
        return TrainConfig.from_dict(config)
    raise TypeError(f"train: config must be a TrainConfig or a mapping, got {type(config).__name__}")
