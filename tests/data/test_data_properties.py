"""Property tests (hypothesis) of splits and geometric augmentation on random inputs."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from convscope.data import make_split, rotate, translate

FAST = settings(max_examples=25, deadline=None)


@FAST
@given(n_per_class=st.lists(st.integers(0, 40), min_size=1, max_size=5),
       fractions=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=4),
       seed=st.integers(0, 2**32 - 1))
def test_split_is_a_partition_with_stratified_sizes(n_per_class, fractions, seed):
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    names = {f"p{i}": f for i, f in enumerate(fractions)}
    split = make_split(y, names, seed=seed)
    every = np.concatenate(list(split.parts.values()))
    assert np.array_equal(np.sort(every), np.arange(len(y)))
    f = np.array(fractions) / sum(fractions)
    for i, name in enumerate(names):
        got = np.bincount(y[split[name]], minlength=len(n_per_class))
        assert (np.abs(got - f[i] * np.array(n_per_class)) < 1).all()
        # and each part's total is N·f rounded down or up, like an unstratified split
        assert abs(len(split[name]) - f[i] * len(y)) < 1


@FAST
@given(h=st.integers(5, 12), w=st.integers(5, 12), d=st.integers(1, 3),
       di=st.integers(-4, 4), dj=st.integers(-4, 4), seed=st.integers(0, 1000))
def test_integer_translation_is_an_exact_shift(h, w, d, di, dj, seed):
    x = np.random.default_rng(seed).random((2, h, w, d)).astype(np.float32)
    kp = np.random.default_rng(seed).random((2, 3, 2)).astype(np.float32) * 3
    out, kp2 = translate(x, (di, dj), kp)
    want = np.zeros_like(x)
    src = x[:, max(0, -di):h - max(0, di), max(0, -dj):w - max(0, dj)]
    want[:, max(0, di):max(0, di) + src.shape[1], max(0, dj):max(0, dj) + src.shape[2]] = src
    np.testing.assert_array_equal(out, want)
    np.testing.assert_allclose(kp2 - kp, np.broadcast_to([dj, di], kp.shape), atol=1e-5)


@FAST
@given(side=st.integers(2, 15), d=st.integers(1, 3), seed=st.integers(0, 1000))
def test_quarter_turns(side, d, seed):
    x = np.random.default_rng(seed).integers(0, 256, (2, side, side, d)).astype(np.uint8)
    np.testing.assert_array_equal(rotate(x, 90)[0], np.rot90(x, 1, axes=(1, 2)))
    np.testing.assert_array_equal(rotate(x, -90)[0], np.rot90(x, -1, axes=(1, 2)))
    np.testing.assert_array_equal(rotate(x, 180)[0], np.rot90(x, 2, axes=(1, 2)))
