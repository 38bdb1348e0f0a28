"""Where each data set's files come from, and their published checksums.

``CANONICAL`` lists, per data set, the files that ``convscope data fetch NAME`` downloads:
(path inside the data dir, URL, algorithm, digest of the downloaded file). ``RAW_MD5`` holds
md5s of the *uncompressed* canonical files, which the loaders check (gzip output differs
between compressors, the content does not). ``SHARED_SHA256`` holds the sha256 of the compact
``.npz`` files of ``../shared/data`` (from its README).
"""

from __future__ import annotations

_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MEDMNIST = "https://zenodo.org/records/10519652/files/"

CANONICAL: dict[str, list[tuple[str, str, str, str]]] = {
    "mnist": [
        ("mnist/train-images-idx3-ubyte.gz", _MNIST + "train-images-idx3-ubyte.gz",
         "md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("mnist/train-labels-idx1-ubyte.gz", _MNIST + "train-labels-idx1-ubyte.gz",
         "md5", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("mnist/t10k-images-idx3-ubyte.gz", _MNIST + "t10k-images-idx3-ubyte.gz",
         "md5", "9fb629c4189551a2d022fa330f9573f3"),
        ("mnist/t10k-labels-idx1-ubyte.gz", _MNIST + "t10k-labels-idx1-ubyte.gz",
         "md5", "ec29112dd5afa0611ce80d1b7f02629c"),
    ],
    "fashion_mnist": [
        ("fashion_mnist/train-images-idx3-ubyte.gz", _FASHION + "train-images-idx3-ubyte.gz",
         "md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("fashion_mnist/train-labels-idx1-ubyte.gz", _FASHION + "train-labels-idx1-ubyte.gz",
         "md5", "25c81989df183df01b3e8a0aad5dffbe"),
        ("fashion_mnist/t10k-images-idx3-ubyte.gz", _FASHION + "t10k-images-idx3-ubyte.gz",
         "md5", "bef4ecab320f06d8554ea6380940ec79"),
        ("fashion_mnist/t10k-labels-idx1-ubyte.gz", _FASHION + "t10k-labels-idx1-ubyte.gz",
         "md5", "bb300cfdad3c16e7a12a480ee83cd310"),
    ],
    "cifar10": [
        ("cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
         "md5", "c32a1d4ab5d03f1284b67883e8d87530"),
    ],
    "adrenal3d": [
        ("medmnist/adrenalmnist3d.npz", _MEDMNIST + "adrenalmnist3d.npz?download=1",
         "md5", "bbd3c5a5576322bc4cdfea780653b1ce"),
        ("medmnist/adrenalmnist3d_64.npz", _MEDMNIST + "adrenalmnist3d_64.npz?download=1",
         "md5", "17721accfe9fb005146a47d33bc54b2f"),
    ],
}

# md5 of the uncompressed IDX files (the originals'; the README of ../shared/data confirms them).
RAW_MD5: dict[str, str] = {
    "mnist/train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "mnist/train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "mnist/t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "mnist/t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    "fashion_mnist/train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "fashion_mnist/train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "fashion_mnist/t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "fashion_mnist/t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    # CIFAR-10 binary batches as extracted from cifar-10-binary.tar.gz
    "cifar-10-batches-bin/data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "cifar-10-batches-bin/data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "cifar-10-batches-bin/data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "cifar-10-batches-bin/data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "cifar-10-batches-bin/data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "cifar-10-batches-bin/test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}

SHARED_SHA256: dict[str, str] = {
    "mnist.npz": "27d6a2cad4c89fe66e409378df9b47e34258b1bdbb35db530af4e7bca97e84f6",
    "cifar10_train_1.npz": "6c860662ce44433d92b6a9eb6f4737c0721c75ba024b3c32449c59daf2084509",
    "cifar10_train_2.npz": "80e664213e02c26007261a491c06244b6a1b303acb363b495c9db2ed63fa0650",
    "cifar10_test.npz": "3b181cb9c348f4d94ca28fa0b8073eb41af7a508b4254d27b9e54932d75e6694",
    "faces68_96.npz": "76f3b97e942a074ff913285b1d53e04f5ab215b56b855758a7c862ce3460323d",
    "fashion_mnist.npz": "0487d11660d9bde9f6738bdfea0c07ca200516a84ed6d46dd0e73f0d83f1e6d3",
    "adrenalmnist3d_28.npz": "f35bf1904a0a8891bf5963d1195f05a22846c3c2604921ec3c15c8cd58440543",
    "adrenalmnist3d_64.npz": "4b3a3b588c51b288fdc93379121b5fd6e2dd301b662dfafc4a15912200a9d16e",
}

# MedMNIST's own md5 of its canonical npz files, checked when loading them.
MEDMNIST_MD5: dict[str, str] = {
    "medmnist/adrenalmnist3d.npz": "bbd3c5a5576322bc4cdfea780653b1ce",
    "medmnist/adrenalmnist3d_64.npz": "17721accfe9fb005146a47d33bc54b2f",
}

MANUAL: dict[str, str] = {
    "facial_keypoints": (
        "the Kaggle 'Facial Keypoints Detection' files need a Kaggle account: accept the "
        "competition rules at https://www.kaggle.com/c/facial-keypoints-detection, run "
        "`kaggle competitions download -c facial-keypoints-detection`, unzip training.zip and "
        "test.zip, and put training.csv and test.csv in <data dir>/facial_keypoints/"
    ),
    "faces68": (
        "faces68_96.npz is built from github udacity/P1_Facial_Keypoints (see "
        "../shared/data/README.md); copy it into the data dir"
    ),
}
