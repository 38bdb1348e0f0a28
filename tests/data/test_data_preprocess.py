"""Preprocessing fitted on the training split: statistics, whitening, saving without pickle."""

import json
import zipfile

import numpy as np
import pytest

from convscope.data import (
    GlobalContrastNormalization,
    MeanImage,
    PCAWhitening,
    Pipeline,
    Standardize,
    ZCAWhitening,
    from_state,
    load_preprocessor,
    save_preprocessor,
)
from convscope.errors import ConfigError, ShapeError


@pytest.fixture(scope="module")
def patches(cifar_test):
    """8×8×3 RGB patches of real CIFAR-10 images: M = 192 < N, so Σ has full rank."""
    x = cifar_test.x[:, 8:16, 8:16].astype(np.float32)
    return x[:6000], x[6000:]


def _cov(x):
    f = x.reshape(len(x), -1).astype(np.float64)
    return np.cov(f.T, bias=True)


def test_mean_image(mnist_train, mnist_test):
    pre = MeanImage().fit(mnist_train.x)
    assert pre.mean.shape == (28, 28, 1)
    assert pre.mean.mean() == pytest.approx(33.318, abs=1e-3)
    out = pre(mnist_train.x[:5000])
    assert out.dtype == np.float32
    np.testing.assert_allclose(pre(mnist_train.x).mean(axis=0), 0, atol=1e-3)
    # applied to the test split with the training statistics: close to, not exactly, zero mean
    assert pre(mnist_test.x).mean() == pytest.approx(33.791 - 33.318, abs=1e-3)


def test_standardize_per_channel(cifar_train):
    pre = Standardize().fit(cifar_train.x)
    np.testing.assert_allclose(pre.mean / 255, [0.4914, 0.4822, 0.4465], atol=1e-4)
    np.testing.assert_allclose(pre.std / 255, [0.2470, 0.2435, 0.2616], atol=1e-4)
    out = pre(cifar_train.x[:10000]).reshape(-1, 3)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=0.02)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=0.02)
    with pytest.raises(ShapeError, match="D=3"):
        pre(np.zeros((2, 32, 32, 1)))


def test_zca_gives_identity_covariance(patches):
    train, test = patches
    zca = ZCAWhitening(eps=1e-3).fit(train)
    w = zca(train)
    assert w.shape == train.shape
    np.testing.assert_allclose(_cov(w), np.eye(192), atol=2e-3)
    np.testing.assert_allclose(zca.matrix, zca.matrix.T, atol=1e-5 * np.abs(zca.matrix).max())
    # ZCA stays close to the image (the least rotation that whitens): the whitened patch
    # correlates best with its own original among all patches
    assert np.corrcoef(w[:1].ravel(), (train[:1] - zca.mean).ravel())[0, 1] > 0.3
    # the held-out split, whitened with training statistics, is only approximately white
    off = np.abs(_cov(zca(test)) - np.eye(192)).max()
    assert 2e-3 < off < 1.0


def test_zca_eps_damps_small_eigenvalues(patches):
    train, _ = patches
    lam = np.linalg.eigvalsh(_cov(train))
    eps = float(np.median(lam))
    w = ZCAWhitening(eps=eps).fit(train)(train)
    got = np.sort(np.linalg.eigvalsh(_cov(w)))
    np.testing.assert_allclose(got, np.sort(lam / (lam + eps)), atol=1e-3)


def test_pca_whitening(patches):
    train, _ = patches
    pca = PCAWhitening(eps=1e-3, n_components=50).fit(train)
    out = pca(train)
    assert out.shape == (6000, 50)
    np.testing.assert_allclose(_cov(out), np.eye(50), atol=1e-3)
    with pytest.raises(ShapeError, match="fitted on samples of shape 8×8×3"):
        pca(np.zeros((2, 9, 8, 3)))


def test_pca_keeps_the_leading_components(patches):
    """Output column i is the projection on the eigenvector of the i-th largest eigenvalue,
    divided by sqrt(λ_i + ε): an identity covariance alone would not tell leading from trailing
    components (any k eigenvectors whiten)."""
    train, _ = patches
    f = train.reshape(len(train), -1).astype(np.float64)
    f -= f.mean(axis=0)
    lam, u = np.linalg.eigh(f.T @ f / len(f))
    lam, u = lam[::-1], u[:, ::-1]
    out = PCAWhitening(eps=1.0, n_components=5).fit(train)(train).astype(np.float64)
    want = f @ u[:, :5] / np.sqrt(lam[:5] + 1.0)
    sign = np.sign((out * want).sum(axis=0))  # an eigenvector's sign is arbitrary
    np.testing.assert_allclose(out * sign, want, atol=1e-4 * np.abs(want).max())


def test_whitening_with_zero_eps_refuses_rank_deficient_data(mnist_test):
    """MNIST's border pixels are always 0: Σ has zero eigenvalues, and eps = 0 made the whole
    ZCA output NaN. It is a ConfigError; PCA on the leading components alone is fine."""
    x = mnist_test.x[:3000]
    with pytest.raises(ConfigError, match=r"ZCAWhitening: the training covariance has rank "
                                          r"\d+ of M = 784 .* Pass eps > 0"):
        ZCAWhitening(eps=0).fit(x)
    with pytest.raises(ConfigError, match="PCAWhitening: .* or n_components ≤ that rank"):
        PCAWhitening(eps=0).fit(x)
    out = PCAWhitening(eps=0, n_components=20).fit(x)(x)
    np.testing.assert_allclose(_cov(out), np.eye(20), atol=1e-3)
    assert np.isfinite(ZCAWhitening(eps=0.1).fit(x)(x)).all()


def test_global_contrast_normalization(cifar_test):
    gcn = GlobalContrastNormalization(scale=55.0, lam=10.0)
    out = gcn(cifar_test.x[:100])
    assert out.shape == (100, 32, 32, 3)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-3)
    x = cifar_test.x[:100].astype(np.float64)
    c = x - x.mean(axis=(1, 2, 3), keepdims=True)
    rms = np.sqrt(10.0 + (c**2).mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(np.sqrt((out.astype(np.float64) ** 2).mean(axis=(1, 2, 3))),
                               55 * np.sqrt((c**2).mean(axis=(1, 2, 3))) / rms, rtol=1e-4)


@pytest.mark.parametrize("make", [
    MeanImage, Standardize, lambda: ZCAWhitening(eps=0.1), lambda: PCAWhitening(0.1, 20),
    lambda: GlobalContrastNormalization(2.0),
    lambda: Pipeline([GlobalContrastNormalization(55.0, 10.0), ZCAWhitening(eps=0.1)]),
])
def test_save_and_load_without_pickle(tmp_path, patches, make):
    train, test = patches
    pre = make().fit(train[:2000])
    config = pre.config()
    assert json.loads(json.dumps(config)) == config  # JSON-able
    state = pre.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
    np.testing.assert_array_equal(from_state(config, state)(test[:50]), pre(test[:50]))
    path = tmp_path / "pre.npz"
    save_preprocessor(pre, path)
    with zipfile.ZipFile(path) as z:  # plain .npy members only
        assert all(n.endswith(".npy") for n in z.namelist())
    np.load(path, allow_pickle=False)["__config__"]
    back = load_preprocessor(path)
    assert type(back) is type(pre)
    np.testing.assert_array_equal(back(test[:50]), pre(test[:50]))


def test_unfitted_and_unknown():
    with pytest.raises(ConfigError, match="not fitted; call fit"):
        ZCAWhitening()(np.zeros((2, 4, 4, 1)))
    with pytest.raises(ConfigError, match="unknown preprocessor type 'Foo'"):
        from_state({"type": "Foo"}, {})
