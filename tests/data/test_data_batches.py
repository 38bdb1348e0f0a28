"""Seeded, stratified splits and the prefetching batch iterator."""

import threading

import numpy as np
import pytest

from convscope.data import (
    KAGGLE15_NAMES,
    DataError,
    RandomFlip,
    Split,
    Standardize,
    batches,
    make_split,
    train_val_split,
)
from convscope.errors import ConfigError

# ------------------------------------------------------------------ splits


def test_stratified_split_keeps_class_proportions(mnist_train):
    y = mnist_train.y
    split = make_split(y, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)
    assert split.stratified
    parts = split.parts
    assert sum(len(v) for v in parts.values()) == 60000
    assert len(np.unique(np.concatenate(list(parts.values())))) == 60000
    counts = np.bincount(y)
    for name, f in [("train", 0.8), ("val", 0.1), ("test", 0.1)]:
        got = np.bincount(y[parts[name]], minlength=10)
        assert (np.abs(got - f * counts) <= 1).all(), name
    assert {k: len(v) for k, v in parts.items()} == {"train": 48000, "val": 6000, "test": 6000}


@pytest.mark.parametrize(("per_class", "want"), [
    ([3] * 100, {"train": 240, "val": 30, "test": 30}),  # every class: 2.4 / 0.3 / 0.3
    ([5, 5], {"train": 8, "val": 1, "test": 1}),  # every class: 4 / 0.5 / 0.5
])
def test_stratified_split_of_small_classes_fills_every_part(per_class, want):
    """Rounding each class on its own sent every remainder to the same part: 300 / 0 / 0 and
    8 / 2 / 0. The part totals must be N·f rounded, with each class still divided ⌊·⌋ or ⌈·⌉."""
    y = np.repeat(np.arange(len(per_class)), per_class)
    for seed in range(5):
        split = make_split(y, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=seed)
        assert {k: len(v) for k, v in split.parts.items()} == want
        for name, f in [("train", 0.8), ("val", 0.1), ("test", 0.1)]:
            got = np.bincount(y[split[name]], minlength=len(per_class))
            assert (np.abs(got - f * np.array(per_class)) < 1).all()


def test_split_is_seeded(mnist_test):
    a = make_split(mnist_test.y, {"train": 0.7, "val": 0.3}, seed=5)
    b = make_split(mnist_test.y, {"train": 0.7, "val": 0.3}, seed=5)
    c = make_split(mnist_test.y, {"train": 0.7, "val": 0.3}, seed=6)
    np.testing.assert_array_equal(a["val"], b["val"])
    assert not np.array_equal(a["val"], c["val"])


def test_unstratified_split_of_keypoints(faces15_train):
    split = make_split(faces15_train.y, {"train": 0.9, "val": 0.1}, seed=0)
    assert not split.stratified
    assert len(split["train"]) == 3116 and len(split["val"]) == 346
    parts = split.apply(faces15_train)
    np.testing.assert_array_equal(parts["val"].y, faces15_train.y[split["val"]])
    assert parts["val"].names == KAGGLE15_NAMES
    with pytest.raises(ConfigError, match="stratify needs"):
        make_split(faces15_train.y, seed=0, stratify=True)


def test_split_save_and_reuse(tmp_path, mnist_test):
    split = make_split(mnist_test.y, seed=3)
    split.save(tmp_path / "split.json")
    back = Split.load(tmp_path / "split.json")
    assert back.n == 10000 and back.seed == 3
    for k in split.parts:
        np.testing.assert_array_equal(back[k], split[k])
    (tmp_path / "bad.json").write_text('{"n": 5, "parts": {"a": [0, 1], "b": [1, 7]}}')
    with pytest.raises(DataError, match="bad.json: not a saved split"):
        Split.load(tmp_path / "bad.json")


def test_train_val_split(mnist_test):
    train, val = train_val_split(mnist_test, 0.2, seed=0)
    assert len(train) == 8000 and len(val) == 2000
    np.testing.assert_array_equal(np.bincount(val.y), np.round(np.bincount(mnist_test.y) * 0.2))


# ------------------------------------------------------------------ batches


def test_batches_cover_every_sample_once_per_epoch(mnist_test):
    it = batches(mnist_test, 128, shuffle=True, seed=0)
    assert len(it) == 79
    seen = []
    for xb, yb in it:
        assert xb.shape[1:] == (28, 28, 1) and xb.dtype == np.uint8 and len(xb) == len(yb)
        seen.append(yb)
    assert [len(s) for s in seen] == [128] * 78 + [16]
    assert np.bincount(np.concatenate(seen)).tolist() == np.bincount(mnist_test.y).tolist()
    drop = batches(mnist_test, 128, seed=0, drop_last=True)
    assert len(drop) == 78 and sum(len(b[0]) for b in drop) == 78 * 128


def test_shuffling_per_epoch_from_the_seed(mnist_test):
    data = (mnist_test.x[:1000], np.arange(1000))
    a = batches(data, 100, seed=1)
    e0, e1 = [np.concatenate([y for _, y in a]) for _ in range(2)]
    assert not np.array_equal(e0, e1)  # a new order each epoch
    assert not np.array_equal(e0, np.arange(1000))
    b = batches(data, 100, seed=1)
    np.testing.assert_array_equal(np.concatenate([y for _, y in b]), e0)
    resumed = batches(data, 100, seed=1, epoch=1)  # a resumed run sees epoch 1's batches
    np.testing.assert_array_equal(np.concatenate([y for _, y in resumed]), e1)
    ordered = batches(data, 100, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([y for _, y in ordered]), np.arange(1000))
    from_rng = batches(data, 100, rng=np.random.default_rng(9))
    assert len(np.unique(np.concatenate([y for _, y in from_rng]))) == 1000


def test_augmentation_and_preprocessing_per_batch(faces15_train):
    ds = faces15_train
    pre = Standardize().fit(ds.x[:500])
    aug = RandomFlip(0.5, names=ds.names)
    run = [list(batches(ds, 64, seed=4, augment=aug, preprocess=pre, prefetch=p))[:5]
           for p in (True, False, 3)]
    for other in run[1:]:  # the background thread changes nothing
        for (xa, ya), (xb, yb) in zip(run[0], other, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    xb, yb = run[0][0]
    assert xb.dtype == np.float32 and abs(float(xb.mean())) < 0.5
    index = batches(ds, 64, seed=4).indices(0)[0]
    plain = ds.y[index]
    flipped = ~np.all(np.isclose(yb, plain), axis=(1, 2))
    assert 0 < flipped.sum() < 64


def test_prefetch_thread_errors_and_early_exit(mnist_test):
    def broken(x, y, rng):
        raise RuntimeError("augmentation failed")

    with pytest.raises(RuntimeError, match="augmentation failed"):
        list(batches(mnist_test, 100, augment=broken))
    before = threading.active_count()
    for i, _ in enumerate(batches(mnist_test, 10)):
        if i == 2:
            break
    import gc

    gc.collect()
    for _ in range(50):
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.02)
    assert threading.active_count() <= before
    with pytest.raises(ConfigError, match="batch_size"):
        batches(mnist_test, 0)
