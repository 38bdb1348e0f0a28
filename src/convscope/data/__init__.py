"""The input layer (H×W×D×N): data sets, preprocessing, augmentation, splits and batching.

Layout is channels-last as everywhere in convscope: 2D inputs N×H×W×D (gray D=1, RGB D=3,
2.5D D=3 neighbouring slices, RGB-D D=4), 3D volumes N×T×H×W×D.

Data sets (:mod:`~convscope.data.datasets`)::

    ds = load("mnist", "train", data_dir=None)   # Dataset(x, y, names, description)
    ds.x  # uint8 60000×28×28×1     ds.y  # int64 class indices (or N×K×2 keypoints, NaN = missing)

Names: mnist, fashion_mnist, cifar10, facial_keypoints (Kaggle CSV), faces68 (option
``keypoints="kaggle15"``), adrenal3d (option ``size=28|64``). Data dir: ``data_dir`` >
$CONVSCOPE_DATA > the user cache dir. ``fetch(name, data_dir)`` downloads canonical files.
Users' own data: :func:`image_folder`, :func:`volumes`; 2.5D and RGB-D: :func:`stack_slices`,
:func:`rgbd`, :func:`stack_channels`.

Preprocessing (:mod:`~convscope.data.preprocess`, fitted on the training split, saved with
the model via ``config()`` + ``state_dict()``): MeanImage, Standardize, PCAWhitening,
ZCAWhitening, GlobalContrastNormalization, Pipeline.

Augmentation (:mod:`~convscope.data.augment`, ``aug(x, y, rng) -> (x, y)``): RandomFlip,
RandomAffine / RandomRotation / RandomTranslation / RandomScaling, RandomCrop, Brightness,
Contrast, Illumination, ColorJitter, StainJitter, GaussianNoise, Compose.

Splits (:mod:`~convscope.data.splits`): make_split, Split (save/load JSON), train_val_split.

Batching (:mod:`~convscope.data.batching`)::

    for xb, yb in batches(ds, 128, shuffle=True, seed=0, augment=aug, preprocess=pre): ...

Errors: malformed or missing files raise :class:`DataError` (a ``ValueError``) naming the file.
"""

from convscope.data.augment import (
    Augmentation,
    Brightness,
    ColorJitter,
    Compose,
    Contrast,
    GaussianNoise,
    Illumination,
    RandomAffine,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomScaling,
    RandomTranslation,
    StainJitter,
    affine,
    hflip,
    rotate,
    scale,
    translate,
)
from convscope.data.batching import BatchIterator, batches
from convscope.data.dataset import Dataset, resolve_data_dir
from convscope.data.datasets import LOADERS, load
from convscope.data.download import fetch
from convscope.data.errors import DataError
from convscope.data.folders import image_folder, rgbd, stack_channels, stack_slices, volumes
from convscope.data.keypoints import (
    IBUG68_NAMES,
    KAGGLE15_NAMES,
    kaggle15_from_ibug68,
    mirror_permutation,
)
from convscope.data.preprocess import (
    GlobalContrastNormalization,
    MeanImage,
    PCAWhitening,
    Pipeline,
    Preprocessor,
    Standardize,
    ZCAWhitening,
    from_state,
    load_preprocessor,
    save_preprocessor,
)
from convscope.data.splits import Split, make_split, train_val_split

__all__ = [
    "IBUG68_NAMES", "KAGGLE15_NAMES", "LOADERS",
    "Augmentation", "BatchIterator", "Brightness", "ColorJitter", "Compose", "Contrast",
    "DataError", "Dataset", "GaussianNoise", "GlobalContrastNormalization", "Illumination",
    "MeanImage", "PCAWhitening", "Pipeline", "Preprocessor", "RandomAffine", "RandomCrop",
    "RandomFlip", "RandomRotation", "RandomScaling", "RandomTranslation", "Split",
    "StainJitter", "Standardize", "ZCAWhitening",
    "affine", "batches", "fetch", "from_state", "hflip", "image_folder", "kaggle15_from_ibug68",
    "load", "load_preprocessor", "make_split", "mirror_permutation", "resolve_data_dir", "rgbd",
    "rotate", "save_preprocessor", "scale", "stack_channels", "stack_slices", "train_val_split",
    "translate", "volumes",
]
