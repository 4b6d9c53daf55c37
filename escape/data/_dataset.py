"""In-memory image classification data sets (host NumPy arrays, channel-first)."""

from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
    """One split of a data set, on the host.

    Attributes:
        images: ``(n, channels, height, width)``; ``uint8`` in ``0..255`` (CIFAR) or ``float32`` in ``[0, 1]``
            (digits). [`escape.data.to_unit_float`][] maps either to float ``[0, 1]``.
        labels: ``(n,)`` ``int32`` class indices.
    """

    images: np.ndarray
    labels: np.ndarray


class Dataset(NamedTuple):
    """A train and a test split with class names.

    Attributes:
        name: e.g. ``"cifar10"``, ``"cifar100"``, ``"digits"``.
        train: the training split.
        test: the test split.
        class_names: one name per class index.
    """

    name: str
    train: Split
    test: Split
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)``."""
        return tuple(self.train.images.shape[1:])
