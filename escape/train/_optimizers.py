"""The optimizer a training run names: looked up in `escape.optim`'s registry or in optax, with weight decay in its
convention and the learning-rate schedule of the run's milestones."""

import inspect
import numbers
from functools import lru_cache
from typing import TYPE_CHECKING

import optax

from .._checks import suggest
from ..optim import make_optimizer, OPTIMIZER_ALIASES, OPTIMIZERS
from ..optim._registry import lookup_optimizer
from ..optim._validate import check_hyperparameter_type

if TYPE_CHECKING:
    from ._config import TrainConfig


def optimizer_choices() -> tuple[str, ...]:
    """The optimizer names known by name (besides any optax optimizer)."""
    return tuple(sorted({*OPTIMIZERS, *OPTIMIZER_ALIASES}))


def _factory(name: str):
    """``(canonical name, factory, in the escape.optim registry)`` of an optimizer name."""
    canonical = lookup_optimizer(name, owner="train")
    if canonical is not None:
        return canonical, OPTIMIZERS[canonical], True
    name = name.strip().lower()
    factory = getattr(optax, name, None) if not name.startswith("_") else None
    if callable(factory):
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = {}
        if "learning_rate" in params:
            return name, factory, False
    raise ValueError(
        f"train: unknown optimizer {name!r}{suggest(name, optimizer_choices())}; known: "
        f"{', '.join(optimizer_choices())}, or the name of an optax optimizer that takes learning_rate"
    )


def make_train_optimizer(
    name: str, learning_rate: optax.ScalarOrSchedule, weight_decay: float = 0.0, **hyperparameters
) -> optax.GradientTransformation:
    """An optimizer by name, with weight decay.

    The name is looked up in `escape.optim`'s registry first (case-insensitive, aliases such as
    ``sgd-momentum`` -> ``momentum`` resolved), then in optax (``lamb``, ``lion``, ``nadam``, ...). If the optimizer's factory takes a
    ``weight_decay`` argument it receives ``weight_decay`` and applies it in its own convention (``adai``:
    L2; ``adaiw``, ``adamw``: decoupled, ``theta <- theta - eta lambda theta``); otherwise the decay is L2,
    ``optax.chain(optax.add_decayed_weights(weight_decay), optimizer)``.

    Args:
        name: the optimizer's name.
        learning_rate: a number or an optax schedule.
        weight_decay: ``lambda >= 0``.
        **hyperparameters: the factory's other arguments.

    Raises:
        ValueError: unknown name or hyperparameter, or a value out of range (one line).
    """
    name, factory, registered = _factory(name)
    params = inspect.signature(factory).parameters
    accepted = [p for p in params if p not in ("learning_rate", "weight_decay", "mask")]
    for key, value in hyperparameters.items():
        if key not in accepted:
            takes = f"accepted: {', '.join(accepted)}" if accepted else "it takes none besides learning_rate"
            raise ValueError(f"train: optimizer {name!r} has no hyperparameter {key!r}{suggest(key, accepted)} "
                             f"({takes})")
        default = params[key].default
        if registered or (isinstance(default, numbers.Real) and not isinstance(default, bool)):
            # registry entries are numbers; an optax factory's numeric default says the value is one too
            check_hyperparameter_type(f"train: optimizer {name!r}", key, value)
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"train: optimizer {name!r}: {key} must be true or false, got {value!r}")
    decay = {"weight_decay": weight_decay} if "weight_decay" in params else {}
    try:
        if registered:
            opt = make_optimizer(name, learning_rate=learning_rate, **decay, **hyperparameters)
        else:
            opt = factory(learning_rate, **decay, **hyperparameters)
    except (TypeError, ValueError) as e:
        raise ValueError(f"train: optimizer {name!r}: {str(e).splitlines()[0]}") from None
    if decay:
        return opt
    return optax.chain(optax.add_decayed_weights(weight_decay), opt)


def learning_rate_schedule(
    learning_rate: float, milestones: tuple[int, ...], gamma: float, steps_per_epoch: int
) -> optax.Schedule:
    """The step schedule: ``learning_rate``, times ``gamma`` from the first step of each milestone epoch on.

    ``optax.piecewise_constant_schedule`` with boundaries ``milestone * steps_per_epoch``. The schedule is
    evaluated at the number of updates done, so update ``t`` (0-based) uses the rate of epoch
    ``t // steps_per_epoch``: ``learning_rate * gamma ** (number of milestones <= that epoch)``.
    """
    boundaries = {int(m) * int(steps_per_epoch): float(gamma) for m in milestones}
    return optax.piecewise_constant_schedule(float(learning_rate), boundaries or None)


@lru_cache(maxsize=32)
def _cached_optimizer(name, learning_rate, weight_decay, milestones, gamma, steps_per_epoch, args):
    """One optimizer object per setting: runs that share a setting (seeds) share the jitted step's cache."""
    schedule = learning_rate_schedule(learning_rate, milestones, gamma, steps_per_epoch)
    return make_train_optimizer(name, schedule, weight_decay, **dict(args)), schedule


def build_optimizer(config: "TrainConfig", steps_per_epoch: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The run's optimizer with its learning-rate schedule, and the schedule (for reporting).

    Equal settings give the same (cached) optimizer object, so runs that differ only in their seed reuse the
    compiled training step.
    """
    key = (config.optimizer, float(config.learning_rate), float(config.weight_decay), config.milestones,
           float(config.gamma), int(steps_per_epoch), tuple(sorted(config.optimizer_args.items())))
    try:
        hash(key)
    except TypeError:  # unhashable hyperparameter values (lists): build without the cache
        return _cached_optimizer.__wrapped__(*key)
    return _cached_optimizer(*key)
