"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): a real data set that needs no download."""

import numpy as np

from ._dataset import Dataset, Split


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The UCI handwritten digits bundled with scikit-learn, as 8x8 single-channel images.

    Pixel values ``0..16`` are scaled to ``[0, 1]``. The train/test split is stratified by class and fixed by
    ``seed`` (the same seed gives the same split on every machine).

    Args:
        test_fraction: fraction of the 1,797 images held out, in ``(0, 1)`` (0.2 gives 1,437 / 360).
        seed: seed of the split.

    Returns:
        A [`escape.data.Dataset`][] named ``"digits"``: images ``float32`` ``(n, 1, 8, 8)``, ``int32`` labels,
        class names ``"0"`` .. ``"9"``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"load_digits: test_fraction must be in (0, 1), got {test_fraction!r}")
    bunch = _sk_load_digits()
    images = (bunch.images.astype(np.float32) / 16.0).reshape((-1, 1, 8, 8))
    labels = bunch.target.astype(np.int32)
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return Dataset(
        "digits",
        Split(images[train_idx], labels[train_idx]),
        Split(images[test_idx], labels[test_idx]),
        tuple(str(c) for c in bunch.target_names),
    )
