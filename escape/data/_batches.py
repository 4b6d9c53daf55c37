"""A seeded mini-batch iterator over host arrays that can resume from any (epoch, step)."""

from collections.abc import Iterator
from typing import Literal, NamedTuple

import numpy as np


class Batch(NamedTuple):
    """One mini-batch.

    Attributes:
        epoch: 0-based epoch.
        step: 0-based step within the epoch.
        arrays: the selected rows of each array given to [`escape.data.Batches`][], in the same order.
        mask: ``(batch_size,)`` bool; ``False`` marks padding rows (only with ``remainder="pad"``).
    """

    epoch: int
    step: int
    arrays: tuple[np.ndarray, ...]
    mask: np.ndarray


class Batches:
    """Mini-batches of the rows of one or more arrays, in a seeded random order per epoch.

    The order of epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(n)``: a pure function of
    ``(seed, e)``, so batch ``(e, s)`` is the same whether it is reached from the start or after resuming, and
    the same on every machine. Rows are gathered on the host; ``jax.device_put`` (with a sharding) is the
    caller's step.

    ```python
    batches = Batches(data.train.images, data.train.labels, batch_size=128, seed=0)
    for b in batches.iterate(num_epochs=10, start_epoch=3, start_step=5):   # resume at epoch 3, step 5
        images, labels = b.arrays
    ```

    Args:
        *arrays: arrays with the same first dimension ``n`` (NumPy, or anything that supports ``a[index]``).
        batch_size: rows per batch.
        seed: seed of the epoch permutations.
        shuffle: ``False`` keeps the original order (evaluation).
        remainder: what to do with the last ``n % batch_size`` rows: ``"drop"`` them (every batch has the
            same shape: one compilation, and divisible over devices if ``batch_size`` is), ``"keep"`` a smaller
            last batch, or ``"pad"`` it to ``batch_size`` by repeating rows of the epoch, with ``mask`` False on
            the repeats (evaluation without recompiling: weight per-example results by ``mask``).
    """

    def __init__(
        self,
        *arrays,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        remainder: Literal["drop", "keep", "pad"] = "drop",
    ):
        if not arrays:
            raise ValueError("Batches: give at least one array")
        sizes = {len(a) for a in arrays}
        if len(sizes) != 1:
            raise ValueError(f"Batches: arrays must have the same first dimension, got {[len(a) for a in arrays]}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"Batches: batch_size must be a positive integer, got {batch_size!r}")
        if remainder not in ("drop", "keep", "pad"):
            raise ValueError(f"Batches: remainder must be 'drop', 'keep' or 'pad', got {remainder!r}")
        self.arrays = arrays
        self.num_examples = sizes.pop()
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.remainder = remainder
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"Batches: {self.num_examples} examples make no batch of {self.batch_size} with remainder='drop'"
            )

    @property
    def steps_per_epoch(self) -> int:
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (1 if rest and self.remainder != "drop" else 0)

    def order(self, epoch: int) -> np.ndarray:
        """Row order of epoch ``epoch``: a permutation of ``range(n)`` (the identity if not shuffling)."""
        if not self.shuffle:
            return np.arange(self.num_examples)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_examples)

    def epoch(self, epoch: int, *, start_step: int = 0) -> Iterator[Batch]:
        """The batches of one epoch, from step ``start_step`` on."""
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"Batches: start_step must be in 0..{self.steps_per_epoch}, got {start_step!r}")
        order = self.order(epoch)
        for step in range(start_step, self.steps_per_epoch):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            mask = np.ones(len(index), bool)
            if len(index) < self.batch_size and self.remainder == "pad":
                fill = np.resize(order, self.batch_size - len(index))  # rows of this epoch, repeated
                index = np.concatenate([index, fill])
                mask = np.concatenate([mask, np.zeros(len(fill), bool)])
            yield Batch(int(epoch), step, tuple(a[index] for a in self.arrays), mask)

    def iterate(self, *, num_epochs: int | None = None, start_epoch: int = 0, start_step: int = 0) -> Iterator[Batch]:
        """Batches of epochs ``start_epoch, start_epoch + 1, ...`` (up to ``num_epochs`` exclusive, or forever),
        the first epoch starting at step ``start_step``."""
        epoch = start_epoch
        while num_epochs is None or epoch < num_epochs:
            yield from self.epoch(epoch, start_step=start_step if epoch == start_epoch else 0)
            epoch += 1

    def __iter__(self) -> Iterator[Batch]:
        """One epoch (epoch 0)."""
        return self.epoch(0)

    def __len__(self) -> int:
        return self.steps_per_epoch
