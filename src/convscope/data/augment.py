"""Data augmentation, seeded and applied per batch on the fly (lecture: geometric transformation,
rotation and translation; colour transformation, illumination, staining; adding noise).

An augmentation is a callable ``aug(x, y, rng) -> (x, y)`` on one batch: ``x`` N×H×W×D (2D) or
N×T×H×W×D (3D), ``y`` class indices (passed through), keypoints N×K×2 (moved with the image),
or None; ``rng`` a ``numpy.random.Generator``. Each sample draws its own parameters from
``rng``, so the same seed gives the same augmented batches. :class:`Compose` chains them.

Coordinates: sample index p = (i, j) (row, column; (t, i, j) for volumes). A keypoint (x, y)
is the point p = (y, x), pixel centres at integers. Every geometric transformation is an
affine map of index coordinates p' = A p + t, with the image resampled at p = A⁻¹(p' − t) by
``scipy.ndimage.affine_transform`` (linear interpolation by default, zeros outside) and the
keypoints mapped forward by the same A, t; keypoints may leave the frame (they are kept).
For volumes the rotation turns each T-slice's (i, j) plane and the flip mirrors j.

Deterministic functions (whole batch, given parameters): :func:`hflip`, :func:`rotate`,
:func:`translate`, :func:`scale`, :func:`affine`. Random augmentations: :class:`RandomFlip`,
:class:`RandomAffine` (and :func:`RandomRotation`, :func:`RandomTranslation`,
:func:`RandomScaling`), :class:`RandomCrop`, :class:`Brightness`, :class:`Contrast`,
:class:`Illumination`, :class:`ColorJitter`, :class:`StainJitter`, :class:`GaussianNoise`.
Geometric ones keep the input dtype (rounded for integers); intensity ones return float32 in
the input's units, unclipped.
"""

from __future__ import annotations

import abc

import numpy as np

from convscope.data.keypoints import mirror_permutation
from convscope.errors import ConfigError, ShapeError, describe_shape


def _check_batch(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (4, 5):
        raise ShapeError(f"augmentation: expected a batch N×H×W×D or N×T×H×W×D, got "
                         f"{describe_shape(x.shape)}")
    return x


def _is_keypoints(y) -> bool:
    return y is not None and np.ndim(y) == 3 and np.shape(y)[-1] == 2


def _check_keypoints(x, y):
    if _is_keypoints(y) and x.ndim != 4:
        raise ShapeError("augmentation: keypoints (N×K×2) go with 2D images N×H×W×D, "
                         f"not {describe_shape(x.shape)}")


def _cast_like(values: np.ndarray, dtype) -> np.ndarray:
    """Back to the input dtype; integers are rounded and clipped to the dtype's range."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


# ------------------------------------------------------------------ geometry

def _spatial(x) -> tuple[int, ...]:
    return x.shape[1:-1]


def _snap(a: np.ndarray) -> np.ndarray:
    """Round entries within 1e-12 of an integer (cos 90° = 6e-17 → 0), so that 90° turns and
    integer shifts resample exactly on the pixel grid."""
    r = np.round(a)
    return np.where(np.abs(a - r) < 1e-12, r, a)


def _move_keypoints(y, a, t):
    """Keypoints (x, y) under p' = A p + t with p = (y, x) (2D only)."""
    p = np.asarray(y, np.float64)[..., ::-1]
    q = p @ np.asarray(a).T + t
    return q[..., ::-1].astype(np.asarray(y).dtype)


def _warp_sample(img, a, t, order, mode, cval):
    """Resample one sample (spatial…×D) at A⁻¹(p' − t), channel by channel."""
    from scipy import ndimage

    inv = _snap(np.linalg.inv(a))
    offset = _snap(-inv @ t)
    src = img.astype(np.float32)
    out = np.stack([ndimage.affine_transform(src[..., d], inv, offset=offset, order=order,
                                             mode=mode, cval=cval, prefilter=order > 1)
                    for d in range(img.shape[-1])], axis=-1)
    return _cast_like(out, img.dtype)


def affine(x, a, t, y=None, *, order=1, mode="constant", cval=0.0):
    """Warp every sample by p' = A p + t (A: s×s, t: s, s = 2 or 3 spatial axes).

    Returns (x', y'): x' in x's dtype, y' keypoints moved forward (other y unchanged).
    """
    x = _check_batch(x)
    _check_keypoints(x, y)
    a, t = _snap(np.asarray(a, np.float64)), _snap(np.asarray(t, np.float64))
    s = len(_spatial(x))
    if a.shape != (s, s) or t.shape != (s,):
        raise ShapeError(f"affine: need A {s}×{s} and t of {s} for {describe_shape(x.shape)}, "
                         f"got A {a.shape}, t {t.shape}")
    out = np.stack([_warp_sample(img, a, t, order, mode, cval) for img in x])
    return out, (_move_keypoints(y, a, t) if _is_keypoints(y) else y)


def _about_centre(x, m):
    """(A, t) applying matrix m about the centre c of the spatial grid: p' = c + m (p − c)."""
    c = (np.asarray(_spatial(x), np.float64) - 1) / 2
    return m, c - m @ c


def _rotation_matrix(angle_deg: float, s: int) -> np.ndarray:
    """Anticlockwise (as displayed) turn of the (i, j) plane: [[cos, −sin], [sin, cos]]."""
    th = np.deg2rad(angle_deg)
    m = np.eye(s)
    m[-2:, -2:] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    return m


def rotate(x, angle, y=None, **kw):
    """Rotate by ``angle`` degrees anticlockwise about the centre ((H−1)/2, (W−1)/2).

    For a square image, ``angle=90`` equals ``np.rot90(x, axes=(1, 2))`` exactly.
    """
    x = _check_batch(x)
    return affine(x, *_about_centre(x, _rotation_matrix(angle, len(_spatial(x)))), y, **kw)


def scale(x, factor, y=None, **kw):
    """Zoom by ``factor`` about the centre: p' = c + factor·(p − c)."""
    x = _check_batch(x)
    return affine(x, *_about_centre(x, factor * np.eye(len(_spatial(x)))), y, **kw)


def translate(x, shift, y=None, **kw):
    """Shift by ``shift`` = (Δi, Δj) (down, right; (Δt, Δi, Δj) for volumes), zeros enter.

    A keypoint (x, y) moves to (x + Δj, y + Δi); integer shifts move pixels exactly.
    """
    x = _check_batch(x)
    s = len(_spatial(x))
    return affine(x, np.eye(s), np.broadcast_to(np.asarray(shift, np.float64), (s,)), y, **kw)


def _flip_permutation(names, y, who) -> np.ndarray:
    """The left/right permutation of the K keypoints of y (N×K×2) named ``names``."""
    if names is None:
        raise ConfigError(f"{who}: keypoint names are needed to swap left and right keypoints")
    perm = mirror_permutation(names)
    if len(perm) != np.shape(y)[1]:
        raise ShapeError(f"{who}: {len(perm)} names for {np.shape(y)[1]} keypoints")
    return perm


def hflip(x, y=None, names=None):
    """Mirror left-right: x'_{i,j} = x_{i,W−1−j}; keypoint (x, y) → (W−1−x, y).

    With keypoints, ``names`` are required and left/right names swap (Kaggle's facial-keypoint
    flip): keypoint k of the flipped face is the mirror of keypoint ``mirror_permutation(names)[k]``.
    """
    x = _check_batch(x)
    _check_keypoints(x, y)
    out = np.ascontiguousarray(x[..., ::-1, :])
    if not _is_keypoints(y):
        return out, y
    perm = _flip_permutation(names, y, "hflip")
    w = x.shape[-2]
    yy = np.array(y, copy=True)[:, perm]
    yy[..., 0] = (w - 1) - yy[..., 0]
    return out, yy


# ------------------------------------------------------------------ random augmentations

class Augmentation(abc.ABC):
    """Base class: ``aug(x, y, rng) -> (x, y)`` on a batch; subclasses implement ``apply``."""

    def __call__(self, x, y=None, rng=None):
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(f"{type(self).__name__}: pass rng=numpy.random.default_rng(seed); "
                              "augmentations draw only from an explicit Generator")
        x = _check_batch(x)
        _check_keypoints(x, y)
        return self.apply(x, y, rng)

    @abc.abstractmethod
    def apply(self, x, y, rng):
        """(x, y) augmented from the checked batch, drawing only from ``rng``."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _per_sample(x, y, fn):
    """Apply ``fn(x[n:n+1], y[n:n+1]) -> (x', y')`` to each sample n and restack."""
    xs, ys = [], []
    for n in range(len(x)):
        xn, yn = fn(n, x[n:n + 1], None if y is None else y[n:n + 1])
        xs.append(xn)
        ys.append(yn)
    return np.concatenate(xs), (None if y is None else np.concatenate(ys))


class Compose(Augmentation):
    """Apply augmentations in order with the same rng."""

    def __init__(self, *augmentations):
        if len(augmentations) == 1 and isinstance(augmentations[0], (list, tuple)):
            augmentations = tuple(augmentations[0])
        self.augmentations = list(augmentations)

    def apply(self, x, y, rng):
        for aug in self.augmentations:
            x, y = aug(x, y, rng)
        return x, y


class RandomFlip(Augmentation):
    """Horizontal flip of each sample with probability ``p`` (see :func:`hflip`).

    ``names``: keypoint names, required when y holds keypoints (left/right swap).
    """

    def __init__(self, p: float = 0.5, names=None):
        if not 0 <= p <= 1:
            raise ConfigError(f"RandomFlip: p must be in [0, 1], got {p}")
        self.p, self.names = float(p), None if names is None else tuple(names)

    def apply(self, x, y, rng):
        if _is_keypoints(y):  # on every batch, not only on those that happen to draw a flip
            _flip_permutation(self.names, y, "RandomFlip")
        flip = rng.random(len(x)) < self.p
        if not flip.any():
            return x, y
        xf, yf = hflip(x[flip], None if y is None else y[flip], self.names)
        x = x.copy()
        x[flip] = xf
        if _is_keypoints(y):
            y = np.array(y, copy=True)
            y[flip] = yf
        return x, y


def _range(v, name, centre=0.0):
    """A scalar v means [centre − v, centre + v]; a pair is (low, high)."""
    lo, hi = (centre - v, centre + v) if np.isscalar(v) else v
    if lo > hi:
        raise ConfigError(f"{name}: range ({lo}, {hi}) has low > high")
    return float(lo), float(hi)


class RandomAffine(Augmentation):
    """Random rotation, translation and isotropic scaling about the centre, one warp per sample.

    Per sample: angle θ ~ U(``degrees``), shift Δ ~ U{−m…m} per spatial axis (integers, so a
    pure shift is exact; ``max_shift`` m an int or one per axis), factor s ~ U(``scale``).
    Then p' = c + s·R(θ)(p − c) + Δ. A scalar ``degrees`` d means (−d, d).
    """

    def __init__(self, degrees=0.0, max_shift=0, scale=(1.0, 1.0), *, order=1,
                 mode="constant", cval=0.0):
        self.degrees = _range(degrees, "RandomAffine degrees")
        self.max_shift = max_shift
        self.scale = _range(scale, "RandomAffine scale", 1.0)
        if self.scale[0] <= 0:
            raise ConfigError(f"RandomAffine: scale must be > 0, got {scale}")
        self.order, self.mode, self.cval = order, mode, cval

    def apply(self, x, y, rng):
        s = len(_spatial(x))
        m = np.broadcast_to(np.asarray(self.max_shift, np.int64), (s,))

        def one(_, xn, yn):
            rot = _rotation_matrix(rng.uniform(*self.degrees), s) * rng.uniform(*self.scale)
            a, t = _about_centre(xn, rot)
            shift = rng.integers(-m, m + 1)
            return affine(xn, a, t + shift, yn, order=self.order, mode=self.mode, cval=self.cval)

        return _per_sample(x, y, one)


def RandomRotation(degrees=15.0, **kw) -> RandomAffine:
    """Rotation by θ ~ U(−degrees, degrees) about the centre."""
    return RandomAffine(degrees=degrees, **kw)


def RandomTranslation(max_shift=4, **kw) -> RandomAffine:
    """Integer shift Δ ~ U{−max_shift…max_shift} per spatial axis."""
    return RandomAffine(max_shift=max_shift, **kw)


def RandomScaling(scale=(0.9, 1.1), **kw) -> RandomAffine:
    """Zoom by s ~ U(scale) about the centre."""
    return RandomAffine(scale=scale, **kw)


class RandomCrop(Augmentation):
    """Pad each spatial side by ``padding`` (zeros), then crop ``size`` at a random offset.

    ``size`` defaults to the input's spatial size (the usual CIFAR-10 pad-4-and-crop).
    Keypoints move by (padding − offset).
    """

    def __init__(self, size=None, padding=4):
        self.size, self.padding = size, int(padding)

    def apply(self, x, y, rng):
        sp = np.asarray(_spatial(x))
        size = sp if self.size is None else np.broadcast_to(np.asarray(self.size), sp.shape)
        p = self.padding
        if (size > sp + 2 * p).any():
            raise ShapeError(f"RandomCrop: crop {tuple(size)} larger than the padded input "
                             f"{tuple(sp + 2 * p)}")
        pad = [(0, 0)] + [(p, p)] * len(sp) + [(0, 0)]
        xp = np.pad(x, pad)

        def one(n, _, yn):
            off = rng.integers(0, sp + 2 * p - size + 1)
            window = (n,) + tuple(slice(o, o + s) for o, s in zip(off, size, strict=True))
            yn = _move_keypoints(yn, np.eye(len(sp)), p - off) if _is_keypoints(yn) else yn
            return xp[window][None], yn

        return _per_sample(x, y, one)


def _per_sample_shape(x):
    """Shape (N, 1, …, 1) broadcasting one value per sample."""
    return (len(x),) + (1,) * (x.ndim - 1)


class Brightness(Augmentation):
    """Additive brightness: y = x + b, b ~ U(−delta, delta) per sample (data units)."""

    def __init__(self, delta=25.0):
        self.delta = _range(delta, "Brightness")

    def apply(self, x, y, rng):
        b = rng.uniform(*self.delta, size=_per_sample_shape(x))
        return (x.astype(np.float32) + b).astype(np.float32), y


class Contrast(Augmentation):
    """Contrast: y = x̄ + c (x − x̄), c ~ U(low, high) per sample, x̄ the sample's mean."""

    def __init__(self, factor=(0.7, 1.3)):
        self.factor = _range(factor, "Contrast", 1.0)

    def apply(self, x, y, rng):
        x = x.astype(np.float32)
        c = rng.uniform(*self.factor, size=_per_sample_shape(x))
        mean = x.mean(axis=tuple(range(1, x.ndim)), keepdims=True)
        return (mean + c * (x - mean)).astype(np.float32), y


class Illumination(Augmentation):
    """Uneven lighting: y = x · (1 + g·r), r a linear ramp from −1 to 1 across the image in a
    random direction φ ~ U(0, 2π), gain g ~ U(−strength, strength) per sample (2D images)."""

    def __init__(self, strength=0.3):
        self.strength = _range(strength, "Illumination")

    def apply(self, x, y, rng):
        if x.ndim != 4:
            raise ShapeError(f"Illumination: 2D images N×H×W×D only, got {describe_shape(x.shape)}")
        h, w = x.shape[1:3]
        ii, jj = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
        phi = rng.uniform(0, 2 * np.pi, len(x))
        g = rng.uniform(*self.strength, len(x))
        ramp = np.cos(phi)[:, None, None] * jj + np.sin(phi)[:, None, None] * ii
        ramp /= np.maximum(np.abs(ramp).max(axis=(1, 2), keepdims=True), 1e-12)
        field = 1 + g[:, None, None] * ramp
        return (x.astype(np.float32) * field[..., None]).astype(np.float32), y


class ColorJitter(Augmentation):
    """Colour jitter of RGB images: per-channel gains y_d = x_d (1 + u_d), u_d ~ U(−gain, gain),
    then saturation y = g + s (y − g), s ~ U(1 − saturation, 1 + saturation), g the grey level
    0.299R + 0.587G + 0.114B."""

    def __init__(self, gain=0.1, saturation=0.2):
        self.gain = _range(gain, "ColorJitter gain")
        self.saturation = _range(saturation, "ColorJitter saturation", 1.0)

    def apply(self, x, y, rng):
        if x.shape[-1] != 3:
            raise ShapeError(f"ColorJitter: RGB images (D=3) only, got {describe_shape(x.shape)}")
        shape = _per_sample_shape(x)
        gains = 1 + rng.uniform(*self.gain, size=shape[:-1] + (3,))
        sat = rng.uniform(*self.saturation, size=shape)
        x = x.astype(np.float32) * gains
        grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
        return (grey[..., None] + sat * (x - grey[..., None])).astype(np.float32), y


class StainJitter(Augmentation):
    """Stain variation for H&E histology (Tellez et al. 2018) in scikit-image's HED colour space.

    Stain densities s = (log x̂ / log 10⁻⁶) · M_HED, x̂ = max(x / v, 10⁻⁶), M_HED =
    ``skimage.color.hed_from_rgb`` (as ``rgb2hed``, but not clipped at 0, so that the map is
    invertible); per sample and stain c: s'_c = α_c s_c + β_c with α ~ U(1 − sigma, 1 + sigma),
    β ~ U(−bias, bias); y = v · exp(log 10⁻⁶ · s' · M_RGB), M_RGB = ``rgb_from_hed``.
    ``value_range`` v: 255 for uint8 images, 1 for float images in [0, 1]. RGB 2D images
    only; float32 output in [0, v]. sigma = bias = 0 gives back the input.
    """

    def __init__(self, sigma=0.05, bias=0.05, value_range=255.0):
        self.sigma, self.bias, self.value_range = float(sigma), float(bias), float(value_range)

    def apply(self, x, y, rng):
        from skimage.color import hed_from_rgb, rgb_from_hed

        if x.ndim != 4 or x.shape[-1] != 3:
            raise ShapeError(f"StainJitter: RGB images N×H×W×3 only, got {describe_shape(x.shape)}")
        v, log_floor = self.value_range, np.log(1e-6)
        rgb = np.maximum(x.astype(np.float64) / v, 1e-6)
        hed = (np.log(rgb) / log_floor) @ hed_from_rgb
        alpha = rng.uniform(1 - self.sigma, 1 + self.sigma, (len(x), 1, 1, 3))
        beta = rng.uniform(-self.bias, self.bias, (len(x), 1, 1, 3))
        out = np.exp(log_floor * ((hed * alpha + beta) @ rgb_from_hed))
        return (np.clip(out, 0, 1) * v).astype(np.float32), y


class GaussianNoise(Augmentation):
    """Additive Gaussian noise: y = x + σ·ε, ε ~ N(0, 1) per element (σ in data units)."""

    def __init__(self, sigma=5.0):
        if sigma < 0:
            raise ConfigError(f"GaussianNoise: sigma must be ≥ 0, got {sigma}")
        self.sigma = float(sigma)

    def apply(self, x, y, rng):
        noise = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(self.sigma)
        return x.astype(np.float32) + noise, y
