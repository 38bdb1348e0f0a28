"""Users' own data: image folders, NIfTI volumes, and 2.5D / RGB-D channel stacking.

- :func:`image_folder`: ``root/<class>/<image>.png|jpg`` → N×H×W×D (D=1 gray, 3 RGB).
- :func:`volumes`: NIfTI files (``.nii``, ``.nii.gz``) listed with their labels in a CSV → N×T×H×W×D.
- :func:`stack_slices`: a volume → 2.5D inputs, k neighbouring slices as the D channels.
- :func:`stack_channels` / :func:`rgbd`: RGB + depth → D = 4 channels, same N×H×W×D path.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from convscope.data.dataset import Dataset
from convscope.data.errors import DataError
from convscope.errors import ConfigError, ShapeError, describe_shape

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P"}
_WIDE_GRAY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # 16-bit gray PNGs open as these


def _gray16_to_8bit(img, path):
    """A 16-bit gray image as 8-bit L: g = round(255·v / 65535) = round(v / 257).

    Pillow's own ``convert("L")`` clips v at 255 instead of scaling (a 16-bit PNG of
    v = 257·g came back as 255 almost everywhere).
    """
    from PIL import Image

    v = np.asarray(img, np.int64)
    if v.size and (v.min() < 0 or v.max() > 65535):
        raise DataError(f"{path}: a {img.mode} image with values {v.min()}…{v.max()}, outside the "
                        "16-bit range 0…65535; save it as an 8- or 16-bit PNG")
    return Image.fromarray(np.rint(v / 257.0).astype(np.uint8), "L")


def read_image(path, size=None):
    """A PNG/JPEG file as a Pillow image, 16-bit gray scaled to 8 bits, resized (bilinear) to
    ``size`` = (H, W) when given; a DataError naming the file when it is no readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read as an image ({e}); remove or replace the file") from None
    if img.mode in _WIDE_GRAY_MODES:
        img = _gray16_to_8bit(img, path)
    if size is not None:
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return img


def _is_gray(img) -> bool:
    if img.mode == "P":
        palette = np.asarray(img.convert("RGB"))
        return bool((palette[..., 0] == palette[..., 1]).all() and
                    (palette[..., 1] == palette[..., 2]).all())
    return img.mode in _GRAY_MODES


def image_folder(path, *, color="auto", size=None) -> Dataset:
    """One sub-folder per class of PNG/JPEG images → Dataset with x uint8 N×H×W×D.

    Classes are the sub-folder names in sorted order (y = their index); images in each folder
    are taken in sorted file order, other files and hidden files are ignored. ``color``:
    ``"gray"`` (D = 1, Pillow's L = 0.299R + 0.587G + 0.114B), ``"rgb"`` (D = 3), or ``"auto"``
    (gray if every image is gray, else RGB). 16-bit gray PNGs are scaled to 8 bits,
    g = round(v / 257). ``size=(H, W)`` resizes (bilinear); without it
    all images must have the same size. An unreadable file raises DataError naming it.
    """
    if color not in ("auto", "gray", "rgb"):
        raise ConfigError(f"image_folder: color must be 'auto', 'gray' or 'rgb', got {color!r}")
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; image_folder expects root/<class>/<image>.png")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(k, f) for k, c in enumerate(classes) for f in sorted((root / c).iterdir())
             if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")]
    if not files:
        raise DataError(f"{root}: no class sub-folders with {'/'.join(IMAGE_EXTENSIONS)} images")
    images = [read_image(f, size) for _, f in files]
    if color == "auto":
        color = "gray" if all(_is_gray(im) for im in images) else "rgb"
    mode = {"gray": "L", "rgb": "RGB"}[color]
    arrays = [np.asarray(im.convert(mode)) for im in images]
    first = arrays[0].shape
    for (_, f), a in zip(files, arrays, strict=True):
        if a.shape != first:
            raise DataError(f"{f}: image is {a.shape[1]}×{a.shape[0]} pixels (W×H), the first "
                            f"image {files[0][1].name} is {first[1]}×{first[0]}; pass size=(H, W)")
    x = np.stack(arrays)
    x = x[..., None] if x.ndim == 3 else x
    y = np.array([k for k, _ in files], np.int64)
    desc = (f"image folder {root.name}: {len(x)} {color} {x.shape[1]}×{x.shape[2]} images, "
            f"{len(classes)} classes")
    return Dataset(x, y, classes, desc)


def _read_label_csv(path):
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the label CSV ({e})") from None
    if len(rows) < 2 or len(rows[0]) < 2:
        raise DataError(f"{path}: expected a header 'file,label' and one row per volume")
    for line, r in enumerate(rows[1:], start=2):
        if len(r) < 2 or not r[0].strip():
            raise DataError(f"{path}: row {line} has no file name and label: {r}")
    return [(r[0].strip(), r[1].strip()) for r in rows[1:]]


def _encode_labels(labels):
    """Integer labels stay class indices (names "0", "1", …); text labels are sorted names."""
    try:
        y = np.array([int(s) for s in labels], np.int64)
    except ValueError:
        names = tuple(sorted(set(labels)))
        return np.array([names.index(s) for s in labels], np.int64), names
    if y.min() < 0:
        raise DataError(f"negative class label {y.min()} in the label CSV")
    return y, tuple(str(i) for i in range(int(y.max()) + 1))


def _read_nifti(path):
    import nibabel as nib

    try:
        vol = np.asanyarray(nib.load(path).dataobj)
    except Exception as e:  # nibabel raises many kinds for damaged files
        raise DataError(f"{path}: cannot read as NIfTI ({type(e).__name__}: {e})") from None
    if vol.ndim == 3:
        vol = vol[..., None]
    if vol.ndim != 4:
        raise DataError(f"{path}: a {vol.ndim}-axis image; expected 3 axes (i, j, k) "
                        "or 4 (i, j, k, channel)")
    return vol.transpose(2, 1, 0, 3)


def volumes(path, labels="labels.csv") -> Dataset:
    """NIfTI volumes with a CSV of labels → Dataset with x N×T×H×W×D.

    ``labels``: a CSV (relative to ``path`` or absolute) with a header and rows
    ``file,label``; the rows give the order. Integer labels are class indices, text labels
    are class names (sorted). Voxel axes (i, j, k[, c]) map to x[n, t, h, w, d] with
    t = k (the slice axis), h = j, w = i, d = c: each x[n, t] is the k-th slice shown with i
    across and j down. All volumes must have the same shape.
    """
    root = Path(path)
    csv_path = root / labels
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: label CSV not found; volumes() needs a CSV with rows "
                        "'file,label' beside the NIfTI files")
    rows = _read_label_csv(csv_path)
    vols = []
    for name, _ in rows:
        f = root / name
        if not f.is_file():
            raise DataError(f"{csv_path}: lists {name}, which is not in {root}")
        vols.append(_read_nifti(f))
    for (name, _), v in zip(rows, vols, strict=True):
        if v.shape != vols[0].shape:
            raise DataError(f"{root / name}: volume is {v.shape} (T×H×W×D), {rows[0][0]} is "
                            f"{vols[0].shape}; resample them to one size")
    y, names = _encode_labels([lab for _, lab in rows])
    x = np.stack(vols)
    desc = f"NIfTI volumes {root.name}: {len(x)} volumes {describe_shape(x.shape)}"
    return Dataset(x, y, names, desc)


def stack_slices(volume, k: int = 3, *, pad: str = "edge") -> np.ndarray:
    """2.5D inputs: slice t with its neighbours as channels, x'_{t,i,j,d} = v_{t+d−⌊k/2⌋,i,j}.

    ``volume``: T×H×W, T×H×W×1, or a batch N×T×H×W×1 (gray volumes). Returns T'×H×W×k, or
    (N·T')×H×W×k for a batch (volume-major). ``pad``: ``"edge"`` repeats the first and last
    slice so T' = T; ``"zero"`` pads with zeros (T' = T); ``"valid"`` keeps only full windows
    (T' = T − k + 1). k must be odd (a centred window), e.g. k = 3 for the lecture's 2.5D.
    """
    v = np.asarray(volume)
    if k < 1 or k % 2 == 0:
        raise ConfigError(f"stack_slices: k must be a positive odd number, got {k}")
    if pad not in ("edge", "zero", "valid"):
        raise ConfigError(f"stack_slices: pad must be 'edge', 'zero' or 'valid', got {pad!r}")
    if v.ndim == 5 and v.shape[-1] == 1:
        return np.concatenate([stack_slices(vi, k, pad=pad) for vi in v])
    if v.ndim == 4 and v.shape[-1] == 1:
        v = v[..., 0]
    if v.ndim != 3:
        raise ShapeError(f"stack_slices: expected a gray volume T×H×W[×1] or N×T×H×W×1, got "
                         f"{describe_shape(v.shape)}")
    if pad != "valid":
        width = ((k // 2, k // 2), (0, 0), (0, 0))
        v = np.pad(v, width, mode="edge") if pad == "edge" else np.pad(v, width)
    if v.shape[0] < k:
        raise ShapeError(f"stack_slices: {v.shape[0]} slices, fewer than the window k={k}")
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(v, k, axis=0))


def stack_channels(*arrays) -> np.ndarray:
    """Concatenate channels-last arrays along D: N×H×W×D₁, N×H×W×D₂, … → N×H×W×(D₁+D₂+…).

    An array without a channel axis (N×H×W) counts as D = 1.
    """
    arrays = [np.asarray(a) for a in arrays]
    ndim = max(a.ndim for a in arrays)
    arrays = [a[..., None] if a.ndim == ndim - 1 else a for a in arrays]
    lead = arrays[0].shape[:-1]
    for a in arrays:
        if a.ndim != ndim or a.shape[:-1] != lead:
            raise ShapeError("stack_channels: all inputs need the same N×H×W, got "
                             + ", ".join(describe_shape(b.shape) for b in arrays))
    return np.concatenate(arrays, axis=-1)


def rgbd(rgb, depth) -> np.ndarray:
    """RGB-D input (D = 4): N×H×W×3 colour and N×H×W[×1] depth → N×H×W×4 (R, G, B, depth)."""
    rgb, depth = np.asarray(rgb), np.asarray(depth)
    if rgb.shape[-1] != 3:
        raise ShapeError(f"rgbd: colour must be N×H×W×3, got {describe_shape(rgb.shape)}")
    if depth.ndim == rgb.ndim and depth.shape[-1] != 1:
        raise ShapeError(f"rgbd: depth must be N×H×W or N×H×W×1, got {describe_shape(depth.shape)}")
    return stack_channels(rgb, depth)
