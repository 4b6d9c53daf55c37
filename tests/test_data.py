"""escape.data: CIFAR readers on generated files, digits, batching, augmentation, normalisation."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from escape.data import (
    augment,
    augment_batch,
    Batches,
    load_cifar10,
    load_cifar100,
    load_digits,
    Normalization,
    random_crop,
    random_flip,
    to_unit_float,
)

# ---------------------------------------------------------------------------------------------------------
# CIFAR files of the standard format (pickle protocol 2 dicts with bytes keys), with a few rows each.


def _dump(path, obj):
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _rows(rng, n):
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def _make_cifar10(root, sizes=(3, 2, 4, 1, 2), n_test=3, seed=0):
    """Write ROOT/cifar-10-batches-py; returns the concatenated train and test rows and labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i, n in enumerate(sizes, start=1):
        x, y = _rows(rng, n), [int(v) for v in rng.integers(0, 10, n)]
        _dump(folder / f"data_batch_{i}", {b"batch_label": b"training batch", b"data": x, b"labels": y,
                                           b"filenames": [b"f.png"] * n})
        train_x.append(x)
        train_y += y
    test_x, test_y = _rows(rng, n_test), [int(v) for v in rng.integers(0, 10, n_test)]
    _dump(folder / "test_batch", {b"data": test_x, b"labels": test_y})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 10000})
    return np.concatenate(train_x), np.array(train_y), test_x, np.array(test_y)


def _make_cifar100(root, n_train=5, n_test=4, seed=1):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _rows(rng, n)
        fine, coarse = rng.integers(0, 100, n).tolist(), rng.integers(0, 20, n).tolist()
        _dump(folder / split, {b"data": x, b"fine_labels": fine, b"coarse_labels": coarse})
        out[split] = (x, np.array(fine), np.array(coarse))
    _dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    return out


def test_cifar10_round_trip(tmp_path):
    train_x, train_y, test_x, test_y = _make_cifar10(tmp_path)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):  # parent or the folder itself
        data = load_cifar10(root)
        assert data.name == "cifar10" and data.num_classes == 10 and data.class_names[9] == "truck"
        assert data.train.images.shape == (12, 3, 32, 32) and data.train.images.dtype == np.uint8
        assert data.image_shape == (3, 32, 32)
        # Row layout: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
        np.testing.assert_array_equal(data.train.images[:, 1, 2, 5], train_x[:, 1024 + 2 * 32 + 5])
        np.testing.assert_array_equal(data.train.images.reshape(12, -1), train_x)
        np.testing.assert_array_equal(data.train.labels, train_y)
        assert data.train.labels.dtype == np.int32
        np.testing.assert_array_equal(data.test.images.reshape(3, -1), test_x)
        np.testing.assert_array_equal(data.test.labels, test_y)


def test_cifar100_round_trip_fine_and_coarse(tmp_path):
    made = _make_cifar100(tmp_path)
    fine = load_cifar100(tmp_path)
    assert fine.num_classes == 100 and fine.class_names[7] == "f7"
    np.testing.assert_array_equal(fine.train.images.reshape(5, -1), made["train"][0])
    np.testing.assert_array_equal(fine.train.labels, made["train"][1])
    np.testing.assert_array_equal(fine.test.labels, made["test"][1])
    coarse = load_cifar100(tmp_path, labels="coarse")
    assert coarse.num_classes == 20
    np.testing.assert_array_equal(coarse.test.labels, made["test"][2])
    with pytest.raises(ValueError, match="'fine' or 'coarse'"):
        load_cifar100(tmp_path, labels="medium")


def _one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_cifar_missing_directory_says_what_to_put_where(tmp_path):
    missing = tmp_path / "nowhere"
    msg = _one_line_error(load_cifar10, missing)
    assert str(missing) in msg and "not found" in msg
    assert "cifar-10-python.tar.gz" in msg and "cifar-10-batches-py" in msg
    assert "data_batch_1..5, test_batch, batches.meta" in msg
    msg = _one_line_error(load_cifar100, missing)
    assert "cifar-100-python" in msg and "train, test, meta" in msg
    # An existing directory without the files.
    msg = _one_line_error(load_cifar10, tmp_path)
    assert "no cifar-10-batches-py folder" in msg


def test_cifar_missing_file_is_named(tmp_path):
    _make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    msg = _one_line_error(load_cifar10, tmp_path)
    assert "missing data_batch_3, batches.meta in" in msg and "cifar-10-batches-py" in msg
    _make_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "test").unlink()
    assert "missing test in" in _one_line_error(load_cifar100, tmp_path)


class _Evil:
    """Unpickling this would call os.system: the reader must refuse it."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"this is not a pickle", "not a readable pickle"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2)[:40], "not a readable"),
        (pickle.dumps([1, 2, 3], protocol=2), "expected a pickled dict"),
        (pickle.dumps({b"labels": [1, 2]}, protocol=2), "missing key b'data'"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2), "missing key b'labels'"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, protocol=2), "shape (n, 3072)"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, protocol=2), "uint8"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, protocol=2), "one per row"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}, protocol=2), "0..9"),
        (pickle.dumps({b"data": _Evil(), b"labels": [1]}, protocol=2), "posix.system"),
    ],
    ids=["garbage", "truncated", "list", "no-data", "no-labels", "width", "dtype", "label-count", "label-range",
         "code"],
)
def test_cifar_corrupt_file_is_named(tmp_path, content, reason):
    _make_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(content)
    msg = _one_line_error(load_cifar10, tmp_path)
    assert msg.startswith(f"CIFAR-10: corrupt file {bad}: ") and reason in msg, msg


def test_cifar_corrupt_meta_is_named(tmp_path):
    _make_cifar10(tmp_path)
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    _dump(meta, {b"label_names": [b"a", b"b"]})
    msg = _one_line_error(load_cifar10, tmp_path)
    assert str(meta) in msg and "10 class names" in msg


# ---------------------------------------------------------------------------------------------------------
# Digits


def test_load_digits_shapes_classes_and_split():
    data = load_digits()
    assert data.name == "digits" and data.num_classes == 10 and data.class_names[3] == "3"
    assert data.train.images.shape == (1437, 1, 8, 8) and data.test.images.shape == (360, 1, 8, 8)
    assert data.train.images.dtype == np.float32 and data.train.labels.dtype == np.int32
    assert data.train.images.min() == 0.0 and data.train.images.max() == 1.0
    assert set(np.unique(data.test.labels)) == set(range(10))
    assert np.bincount(data.test.labels).min() >= 35  # stratified: 35 or 36 of each digit
    again = load_digits()
    np.testing.assert_array_equal(again.train.labels, data.train.labels)
    np.testing.assert_array_equal(again.test.images, data.test.images)
    other = load_digits(seed=1)
    assert not np.array_equal(other.test.images, data.test.images)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.0)


# ---------------------------------------------------------------------------------------------------------
# Batching


def test_batches_epochs_are_seeded_permutations():
    x, y = np.arange(10)[:, None] * np.ones((1, 3)), np.arange(10)
    batches = Batches(x, y, batch_size=4, seed=3, remainder="keep")
    assert len(batches) == 3
    epoch0 = list(batches.epoch(0))
    assert [b.arrays[1].shape[0] for b in epoch0] == [4, 4, 2]
    seen = np.concatenate([b.arrays[1] for b in epoch0])
    assert sorted(seen) == list(range(10))
    np.testing.assert_array_equal(np.concatenate([b.arrays[0][:, 0] for b in epoch0]), seen)  # rows stay aligned
    assert not np.array_equal(seen, np.concatenate([b.arrays[1] for b in batches.epoch(1)]))
    np.testing.assert_array_equal(seen, np.concatenate([b.arrays[1] for b in Batches(x, y, batch_size=4, seed=3,
                                                                                    remainder="keep").epoch(0)]))
    assert not np.array_equal(seen, Batches(y, batch_size=10, seed=4).order(0))
    np.testing.assert_array_equal(Batches(y, batch_size=4, shuffle=False).order(5), np.arange(10))


def test_batches_resume_matches_uninterrupted():
    y = np.arange(23)
    batches = Batches(y, batch_size=5, seed=0)  # drop: 4 steps per epoch
    full = [(b.epoch, b.step, b.arrays[0]) for b in batches.iterate(num_epochs=3)]
    assert len(full) == 12
    resumed = [(b.epoch, b.step, b.arrays[0]) for b in batches.iterate(num_epochs=3, start_epoch=1, start_step=2)]
    assert len(resumed) == 6
    for (e1, s1, a1), (e2, s2, a2) in zip(full[6:], resumed):
        assert (e1, s1) == (e2, s2)
        np.testing.assert_array_equal(a1, a2)


def test_batches_pad_and_drop():
    y = np.arange(10)
    padded = list(Batches(y, batch_size=4, seed=0, remainder="pad").epoch(0))
    assert [b.arrays[0].shape[0] for b in padded] == [4, 4, 4]
    assert [int(b.mask.sum()) for b in padded] == [4, 4, 2]
    assert sorted(np.concatenate([b.arrays[0][b.mask] for b in padded])) == list(range(10))
    assert len(Batches(y, batch_size=4, seed=0)) == 2
    with pytest.raises(ValueError, match="no batch"):
        Batches(y, batch_size=11)
    with pytest.raises(ValueError, match="same first dimension"):
        Batches(y, np.arange(3), batch_size=2)
    with pytest.raises(ValueError, match="remainder"):
        Batches(y, batch_size=2, remainder="wrap")


# ---------------------------------------------------------------------------------------------------------
# Augmentation and normalisation


def _image(seed=0, shape=(3, 6, 5)):
    return jnp.asarray(np.random.default_rng(seed).random(shape), jnp.float32)


def test_random_crop_is_a_window_of_the_padded_image():
    image, pad = _image(), 2
    padded = np.pad(np.asarray(image), ((0, 0), (pad, pad), (pad, pad)))
    crop = jax.jit(random_crop, static_argnums=2)
    offsets = set()
    for i in range(60):
        out = np.asarray(crop(jax.random.key(i), image, pad))
        assert out.shape == image.shape
        matches = [(a, b) for a in range(2 * pad + 1) for b in range(2 * pad + 1)
                   if np.array_equal(out, padded[:, a : a + 6, b : b + 5])]
        assert matches, f"key {i}: crop is not a window of the padded image"
        offsets.add(matches[0])
        np.testing.assert_array_equal(out, crop(jax.random.key(i), image, pad))  # deterministic per key
    assert len(offsets) >= 15  # 25 possible offsets, 60 draws: a fixed offset would give 1
    assert {a for a, _ in offsets} == set(range(5)) and {b for _, b in offsets} == set(range(5))


def test_random_flip_is_exact_reversal():
    image = _image(1)
    flip = jax.jit(random_flip)
    kinds = set()
    for i in range(20):
        out = np.asarray(flip(jax.random.key(i), image))
        if np.array_equal(out, image):
            kinds.add("same")
        else:
            np.testing.assert_array_equal(out, np.asarray(image)[:, :, ::-1])
            kinds.add("flipped")
        np.testing.assert_array_equal(out, flip(jax.random.key(i), image))
    assert kinds == {"same", "flipped"}


def test_augment_batch_uses_one_key_per_example():
    images = jnp.stack([_image(s) for s in range(4)])
    key = jax.random.key(7)
    out = jax.jit(augment_batch)(key, images)
    assert out.shape == images.shape
    keys = jax.random.split(key, 4)
    one = jax.jit(augment)
    for n in range(4):
        np.testing.assert_array_equal(out[n], one(keys[n], images[n]))
    np.testing.assert_array_equal(augment_batch(key, images, padding=0, flip=False), images)


def test_normalization_standardises_each_channel():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    images[:, 1] //= 2  # a channel with another mean and spread
    norm = Normalization.fit(images, chunk=7)  # chunked float64 reduction
    as_float = np.asarray(images, np.float64) / 255
    np.testing.assert_allclose(norm.mean, as_float.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(norm.std, as_float.std(axis=(0, 2, 3)), rtol=1e-5)
    out = np.asarray(norm(to_unit_float(images)), np.float64)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(norm(to_unit_float(images[0])), out[0], rtol=1e-6, atol=1e-6)  # one image
    with pytest.raises(ValueError, match="constant"):
        Normalization.fit(np.zeros((2, 1, 2, 2), np.uint8))


def test_augment_batch_under_explicit_sharding():
    """Under an Explicit mesh the per-example keys are resharded like the images (vmap requires it)."""
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    images = jnp.stack([_image(s) for s in range(4)])
    sharded = jax.device_put(images, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
    key = jax.random.key(7)
    np.testing.assert_array_equal(jax.jit(augment_batch)(key, sharded), jax.jit(augment_batch)(key, images))
