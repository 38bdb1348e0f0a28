"""Data preprocessing (the lecture's input layer: mean subtraction, PCA / whitening).

Each preprocessor is fitted on the **training split only** and then applied to every split
(and by ``predict``) so that all data see the same transformation::

    pre = Standardize().fit(train.x)       # statistics of the training images
    x_train, x_test = pre(train.x), pre(test.x)   # float32, same layout as the input

Samples x_n are H×W×D images or T×H×W×D volumes (the batch is N×…×D); flattened, x_n ∈ R^M
with M = H·W·D. Over the N training samples:

- :class:`MeanImage`: μ = (1/N) Σ_n x_n (an image), y_n = x_n − μ.
- :class:`Standardize`: per channel d, μ_d and σ_d over all n, i, j; y = (x − μ_d) / σ_d.
- :class:`PCAWhitening`: Σ = (1/N) Σ_n (x_n − μ)(x_n − μ)ᵀ = U Λ Uᵀ;
  y_n = (Λ_k + εI)^{-1/2} U_kᵀ (x_n − μ) ∈ R^k for the k leading eigenvectors (flat N×k).
- :class:`ZCAWhitening`: W = U (Λ + εI)^{-1/2} Uᵀ, y_n = W (x_n − μ), reshaped to the image.
  Whitened training data has covariance U Λ(Λ+εI)^{-1} Uᵀ ≈ I where λ ≫ ε.
- :class:`GlobalContrastNormalization`: per sample, x̄ = mean of x_n,
  y_n = s (x_n − x̄) / max(ε, sqrt(λ + mean((x_n − x̄)²))). Nothing to fit.
- :class:`Pipeline`: steps applied in order, each fitted on the previous step's output.

Saving as data only: ``p.config()`` is a JSON-able dict (``{"type": …, hyper-parameters}``)
and ``p.state_dict()`` a dict of fitted NumPy arrays (for safetensors or ``.npz``);
``from_state(config, arrays)`` rebuilds the fitted object. :func:`save_preprocessor` /
:func:`load_preprocessor` write and read both as one ``.npz``.
"""

from __future__ import annotations

import abc
import json

import numpy as np

from convscope.errors import ConfigError, ShapeError, describe_shape


class Preprocessor(abc.ABC):
    """Base class: ``fit(x_train)`` → self, ``p(x)`` → float32 array, ``state_dict``/``config``.

    Subclasses name their hyper-parameters in ``PARAMS`` and their fitted arrays in ``ARRAYS``
    (attributes of the object); that is all the state there is.
    """

    PARAMS: tuple[str, ...] = ()
    ARRAYS: tuple[str, ...] = ()

    def fit(self, x) -> Preprocessor:
        """Fit the statistics on training samples x (N×…×D); returns self."""
        return self

    def __call__(self, x) -> np.ndarray:
        """Apply the fitted transformation to x (N×…×D); returns float32."""
        self._require_fitted()
        return self.transform(np.asarray(x, np.float32))

    @abc.abstractmethod
    def transform(self, x: np.ndarray) -> np.ndarray:
        """The fitted transformation of float32 samples x (N×…×D)."""

    def fit_transform(self, x) -> np.ndarray:
        """``fit(x)`` then ``self(x)``."""
        return self.fit(x)(x)

    @property
    def fitted(self) -> bool:
        return all(getattr(self, a, None) is not None for a in self.ARRAYS)

    def _require_fitted(self):
        if not self.fitted:
            raise ConfigError(f"{type(self).__name__}: not fitted; call fit(x_train) first")

    def config(self) -> dict:
        """JSON-able description: ``{"type": class name, hyper-parameter: value, …}``."""
        return {"type": type(self).__name__, **{p: getattr(self, p) for p in self.PARAMS}}

    def state_dict(self) -> dict[str, np.ndarray]:
        """The fitted arrays by name (empty for a stateless step)."""
        self._require_fitted()
        return {a: np.asarray(getattr(self, a)) for a in self.ARRAYS}

    @classmethod
    def from_state(cls, config: dict, arrays: dict) -> Preprocessor:
        """Rebuild a fitted object from ``config()`` and ``state_dict()``."""
        obj = cls(**{p: config[p] for p in cls.PARAMS if p in config})
        for a in cls.ARRAYS:
            if a not in arrays:
                raise ConfigError(f"{cls.__name__}.from_state: missing array {a!r}")
            setattr(obj, a, np.asarray(arrays[a]))
        return obj

    def __repr__(self) -> str:
        params = ", ".join(f"{p}={getattr(self, p)!r}" for p in self.PARAMS)
        return f"{type(self).__name__}({params}){'' if self.fitted else ' (not fitted)'}"


def _batch(x, who: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise ShapeError(f"{who}: expected a non-empty batch N×H×W×D, got {describe_shape(x.shape)}")
    return x


def _check_sample_shape(x, shape, who):
    if tuple(x.shape[1:]) != tuple(shape):
        raise ShapeError(f"{who}: fitted on samples of shape {'×'.join(map(str, shape))}, "
                         f"given {describe_shape(x.shape)}")


class MeanImage(Preprocessor):
    """Mean image subtraction: μ = (1/N) Σ_n x_n, y_n = x_n − μ."""

    ARRAYS = ("mean",)

    def __init__(self):
        self.mean = None

    def fit(self, x):
        self.mean = _batch(x, "MeanImage.fit").mean(axis=0, dtype=np.float64).astype(np.float32)
        return self

    def transform(self, x):
        _check_sample_shape(x, self.mean.shape, "MeanImage")
        return x - self.mean


def _channel_moments(flat: np.ndarray, chunk: int = 1 << 16):
    """μ_d and σ_d of the columns of an R×D array, in one pass of float64 matrix products.

    With a shift K (the first chunk's mean) against cancellation:
    μ = K + mean(x − K), σ² = mean((x − K)²) − (μ − K)².
    """
    shift = flat[:chunk].mean(axis=0, dtype=np.float64)
    ones = np.ones(chunk)
    total, square = np.zeros(flat.shape[1]), np.zeros(flat.shape[1])
    for s in range(0, len(flat), chunk):
        c = flat[s:s + chunk].astype(np.float64) - shift
        total += ones[:len(c)] @ c
        square += np.einsum("rd,rd->d", c, c) if c.shape[1] > 8 else np.diag(c.T @ c)
    d = total / len(flat)
    return shift + d, np.sqrt(np.maximum(square / len(flat) - d * d, 0.0))


class Standardize(Preprocessor):
    """Per-channel standardisation: y_{…,d} = (x_{…,d} − μ_d) / max(σ_d, ε).

    μ_d, σ_d: mean and standard deviation of channel d over all samples and positions.
    """

    PARAMS = ("eps",)
    ARRAYS = ("mean", "std")

    def __init__(self, eps: float = 1e-8):
        self.eps = float(eps)
        self.mean = self.std = None

    def fit(self, x):
        x = _batch(x, "Standardize.fit")
        mean, std = _channel_moments(x.reshape(-1, x.shape[-1]))
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        return self

    def transform(self, x):
        if x.shape[-1] != self.mean.shape[0]:
            raise ShapeError(f"Standardize: fitted on D={self.mean.shape[0]} channels, given "
                             f"{describe_shape(x.shape)}")
        return (x - self.mean) / np.maximum(self.std, self.eps)


def _covariance(flat: np.ndarray, mean: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Σ = (1/N) Σ_n (x_n − μ)(x_n − μ)ᵀ, accumulated in float64 over chunks of samples."""
    m = flat.shape[1]
    sigma = np.zeros((m, m))
    for s in range(0, len(flat), chunk):
        c = flat[s:s + chunk].astype(np.float64) - mean
        sigma += c.T @ c
    return sigma / len(flat)


class _Whitening(Preprocessor):
    """Shared fit of PCA and ZCA whitening: μ, Σ = U Λ Uᵀ, and the matrix W of the subclass."""

    ARRAYS = ("mean", "matrix")
    _ALSO = ""  # another remedy for a rank-deficient covariance, for the error message

    def __init__(self, eps: float = 1e-2):
        if eps < 0:
            raise ConfigError(f"{type(self).__name__}: eps must be ≥ 0, got {eps}")
        self.eps = float(eps)
        self.mean = self.matrix = None

    def fit(self, x):
        x = _batch(x, f"{type(self).__name__}.fit")
        flat = x.reshape(len(x), -1)
        mean = flat.mean(axis=0, dtype=np.float64)
        lam, u = np.linalg.eigh(_covariance(flat, mean))
        order = np.argsort(lam)[::-1]
        lam, u = np.clip(lam[order], 0.0, None), u[:, order]
        self._check_rank(lam)
        self.mean = mean.reshape(x.shape[1:]).astype(np.float32)
        self.matrix = self._whitening_matrix(u, lam).astype(np.float32)
        return self

    def _n_used(self, m: int) -> int:
        """How many eigenvectors (largest λ first) the whitening matrix uses."""
        return m

    def _check_rank(self, lam):
        """Refuse to divide by an eigenvalue that is 0 up to rounding, λ ≤ λ_max · M · 2⁻⁵²:
        with ε = 0, (λ + ε)^{-1/2} would be inf (or ~1e8), and every output NaN or noise."""
        tol = lam[0] * len(lam) * np.finfo(np.float64).eps
        rank = int((lam > tol).sum())
        k = self._n_used(len(lam))
        if (lam[:k] + self.eps <= tol).any():
            raise ConfigError(
                f"{type(self).__name__}: the training covariance has rank {rank} of M = "
                f"{len(lam)} (directions with no variance, e.g. always-black border pixels); "
                f"eps = {self.eps:g} would divide by their zero eigenvalues. Pass eps > 0 (in "
                f"the data's variance units, e.g. 0.1){self._ALSO}."
            )

    @abc.abstractmethod
    def _whitening_matrix(self, u, lam):
        """The whitening matrix from the covariance's eigenvectors u and eigenvalues λ."""

    def _flat_white(self, x):
        _check_sample_shape(x, self.mean.shape, type(self).__name__)
        return (x - self.mean).reshape(len(x), -1) @ self.matrix


class PCAWhitening(_Whitening):
    """PCA whitening: y_n = (Λ_k + εI)^{-1/2} U_kᵀ (x_n − μ), a flat vector of k components.

    ``n_components`` = k (default all M). Output N×k, the input of a fully connected layer.
    """

    PARAMS = ("eps", "n_components")
    _ALSO = " or n_components ≤ that rank"

    def __init__(self, eps: float = 1e-2, n_components: int | None = None):
        super().__init__(eps)
        self.n_components = None if n_components is None else int(n_components)

    def _n_used(self, m: int) -> int:
        return m if self.n_components is None else min(self.n_components, m)

    def _whitening_matrix(self, u, lam):
        k = self._n_used(len(lam))
        return u[:, :k] / np.sqrt(lam[:k] + self.eps)

    def transform(self, x):
        return self._flat_white(x)


class ZCAWhitening(_Whitening):
    """ZCA whitening: W = U (Λ + εI)^{-1/2} Uᵀ, y_n = W (x_n − μ), in the input's layout.

    ε (``eps``) is in the units of the data's variance (grey levels² for uint8 input);
    directions with eigenvalue λ ≪ ε are damped rather than amplified.
    """

    PARAMS = ("eps",)

    def _whitening_matrix(self, u, lam):
        return (u / np.sqrt(lam + self.eps)) @ u.T

    def transform(self, x):
        return self._flat_white(x).reshape(x.shape)


class GlobalContrastNormalization(Preprocessor):
    """Per-sample contrast normalisation: y_n = s (x_n − x̄_n) / max(ε, sqrt(λ + mean((x_n − x̄_n)²))).

    x̄_n is the mean over all pixels and channels of sample n; ``scale`` s, ``lam`` λ, ``eps`` ε.
    """

    PARAMS = ("scale", "lam", "eps")

    def __init__(self, scale: float = 1.0, lam: float = 0.0, eps: float = 1e-8):
        self.scale, self.lam, self.eps = float(scale), float(lam), float(eps)

    def transform(self, x):
        axes = tuple(range(1, x.ndim))
        centred = x - x.mean(axis=axes, keepdims=True)
        norm = np.sqrt(self.lam + (centred**2).mean(axis=axes, keepdims=True))
        return self.scale * centred / np.maximum(norm, self.eps)


class Pipeline(Preprocessor):
    """Steps applied in order; ``fit`` fits each step on the previous steps' output."""

    def __init__(self, steps):
        self.steps = list(steps)

    @property
    def fitted(self) -> bool:
        return all(s.fitted for s in self.steps)

    def fit(self, x):
        for i, step in enumerate(self.steps):
            step.fit(x)
            if i + 1 < len(self.steps):
                x = step(x)
        return self

    def transform(self, x):
        for step in self.steps:
            x = step(x)
        return x

    def config(self):
        return {"type": "Pipeline", "steps": [s.config() for s in self.steps]}

    def state_dict(self):
        return {f"{i}.{k}": v for i, s in enumerate(self.steps) for k, v in s.state_dict().items()}

    @classmethod
    def from_state(cls, config, arrays):
        steps = []
        for i, c in enumerate(config["steps"]):
            sub = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.split(".", 1)[0] == str(i)}
            steps.append(from_state(c, sub))
        return cls(steps)

    def __repr__(self):
        return f"Pipeline({self.steps!r})"


PREPROCESSORS: dict[str, type[Preprocessor]] = {
    c.__name__: c for c in (MeanImage, Standardize, PCAWhitening, ZCAWhitening,
                            GlobalContrastNormalization, Pipeline)
}


def from_state(config: dict, arrays: dict) -> Preprocessor:
    """Rebuild any fitted preprocessor from its ``config()`` and ``state_dict()``."""
    kind = config.get("type")
    if kind not in PREPROCESSORS:
        raise ConfigError(f"from_state: unknown preprocessor type {kind!r}; known: "
                          f"{', '.join(PREPROCESSORS)}")
    return PREPROCESSORS[kind].from_state(config, arrays)


_CONFIG_KEY = "__config__"


def save_preprocessor(pre: Preprocessor, path) -> None:
    """Write a fitted preprocessor as one ``.npz``: its arrays plus its config as JSON text."""
    np.savez(path, **{_CONFIG_KEY: np.array(json.dumps(pre.config()))}, **pre.state_dict())


def load_preprocessor(path) -> Preprocessor:
    """Read a preprocessor written by :func:`save_preprocessor` (JSON and arrays only)."""
    from convscope.data.formats import read_npz

    arrays = read_npz(path)
    config = json.loads(str(arrays.pop(_CONFIG_KEY)))
    return from_state(config, arrays)
