"""Canonical file formats, tested on fixtures written in exactly that format from real data."""

import gzip
import hashlib

import numpy as np
import pytest

from convscope.data import KAGGLE15_NAMES, DataError, load
from convscope.data.formats import (
    idx_bytes,
    read_cifar_binary,
    read_idx,
    read_kaggle_csv,
    read_npz,
    write_cifar_binary,
    write_idx,
    write_kaggle_csv,
)

# ------------------------------------------------------------------ IDX


def test_idx_encoding_reproduces_the_original_mnist_files(mnist_train):
    """Our IDX writer re-encodes the 60000 training images to the original file, byte for byte."""
    x = mnist_train.x[..., 0]
    assert hashlib.md5(idx_bytes(x)).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"
    assert hashlib.md5(idx_bytes(mnist_train.y.astype(np.uint8))).hexdigest() == \
        "a25bea736e30d166cdddb491f175f624"


def test_mnist_loader_reads_uncompressed_idx_and_verifies(tmp_path, mnist_test):
    d = tmp_path / "mnist"
    d.mkdir()
    write_idx(d / "t10k-images-idx3-ubyte", mnist_test.x[..., 0])
    write_idx(d / "t10k-labels-idx1-ubyte", mnist_test.y.astype(np.uint8))
    ds = load("mnist", "test", data_dir=tmp_path)  # verify=True: the original md5s match
    np.testing.assert_array_equal(ds.x, mnist_test.x)
    np.testing.assert_array_equal(ds.y, mnist_test.y)
    assert "t10k-images-idx3-ubyte" in ds.description


def test_idx_gz_roundtrip_of_100_images(tmp_path, mnist_train):
    d = tmp_path / "mnist"
    d.mkdir()
    x, y = mnist_train.x[:100, ..., 0], mnist_train.y[:100].astype(np.uint8)
    write_idx(d / "train-images-idx3-ubyte.gz", x)
    write_idx(d / "train-labels-idx1-ubyte.gz", y)
    assert (d / "train-images-idx3-ubyte.gz").read_bytes()[:2] == b"\x1f\x8b"
    back = read_idx(d / "train-images-idx3-ubyte.gz")
    assert back.dtype == np.uint8 and back.shape == (100, 28, 28)
    np.testing.assert_array_equal(back, x)
    ds = load("mnist", data_dir=tmp_path, verify=False)
    np.testing.assert_array_equal(ds.x, mnist_train.x[:100])
    np.testing.assert_array_equal(ds.y, mnist_train.y[:100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: md5 is .* expected 6bbc9ace"):
        load("mnist", data_dir=tmp_path)


def test_idx_label_problems_name_the_label_file(tmp_path, mnist_train):
    """A label file that does not match its image file is named, not the image file."""
    d = tmp_path / "mnist"
    d.mkdir()
    write_idx(d / "train-images-idx3-ubyte.gz", mnist_train.x[:100, ..., 0])
    write_idx(d / "train-labels-idx1-ubyte.gz", mnist_train.y[:99].astype(np.uint8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: labels have shape \(99,\), "
                                        r"expected \(100,\)"):
        load("mnist", data_dir=tmp_path, verify=False)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.full(100, 10, np.uint8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: labels range 10…10"):
        load("mnist", data_dir=tmp_path, verify=False)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_idx_dtypes_roundtrip(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if dtype != np.uint8 else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", a)
    back = read_idx(tmp_path / "a.idx")
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, a)


def test_truncated_idx(tmp_path, mnist_train):
    raw = idx_bytes(mnist_train.x[:10, ..., 0])
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw[:-30]))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: truncated: the header "
                                        r"announces 10×28×28 elements = 7840 bytes of data, "
                                        r"the file holds 7810"):
        read_idx(path)
    path.write_bytes(raw[:6])
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(path)


def test_idx_header_with_absurd_sizes(tmp_path):
    """A damaged header announcing 2³¹×2³¹×2³¹ elements: np.prod wrapped around to 0 and the
    reader crashed inside NumPy's reshape instead of naming the file."""
    import struct

    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">HBB3I", 0, 8, 3, 2**31, 2**31, 2**31))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated: the header "
                                        r"announces 2147483648×2147483648×2147483648 elements"):
        read_idx(path)


def test_wrong_idx_magic(tmp_path, mnist_train):
    raw = bytearray(idx_bytes(mnist_train.y[:10].astype(np.uint8)))
    raw[0:4] = b"\x08\x01\x00\x00"  # little-endian magic, a common mistake
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: wrong magic number 0x08010000"):
        read_idx(path)


def test_damaged_gzip(tmp_path, mnist_train):
    data = gzip.compress(idx_bytes(mnist_train.y[:1000].astype(np.uint8)))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: the gzip stream is damaged"):
        read_idx(path)


# ------------------------------------------------------------------ CIFAR-10 binary


@pytest.fixture(scope="module")
def cifar_bin_dir(tmp_path_factory, cifar_train, cifar_test):
    """The six batches of the binary version, written from the real data."""
    d = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-bin"
    d.mkdir()
    for i in range(5):
        s = slice(10000 * i, 10000 * (i + 1))
        write_cifar_binary(d / f"data_batch_{i + 1}.bin", cifar_train.x[s], cifar_train.y[s])
    write_cifar_binary(d / "test_batch.bin", cifar_test.x, cifar_test.y)
    (d / "batches.meta.txt").write_text("\n".join(cifar_train.names) + "\n\n")
    return d


def test_cifar_binary_record_layout(cifar_bin_dir):
    raw = (cifar_bin_dir / "data_batch_1.bin").read_bytes()
    assert len(raw) == 10000 * 3073
    # record 0: label 6, then the red plane starting 59, 43, 50 … blue plane ending 140, 84, 72
    assert list(raw[:4]) == [6, 59, 43, 50] and list(raw[3070:3073]) == [140, 84, 72]
    assert list(raw[3073:3077]) == [9, 154, 126, 105]
    x, y = read_cifar_binary(cifar_bin_dir / "data_batch_1.bin")
    assert x.shape == (10000, 32, 32, 3) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]


def test_cifar_loader_reads_binary_batches(cifar_bin_dir, cifar_train, cifar_test):
    root = cifar_bin_dir.parent
    train = load("cifar10", data_dir=root)  # verify=True: md5 of each batch file
    np.testing.assert_array_equal(train.x, cifar_train.x)
    np.testing.assert_array_equal(train.y, cifar_train.y)
    assert "data_batch_5.bin" in train.description
    test = load("cifar10", "test", data_dir=root)
    np.testing.assert_array_equal(test.x, cifar_test.x)
    assert test.names == cifar_train.names


def test_truncated_cifar_batch(tmp_path, cifar_test):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    write_cifar_binary(d / "test_batch.bin", cifar_test.x[:5], cifar_test.y[:5])
    raw = (d / "test_batch.bin").read_bytes()
    (d / "test_batch.bin").write_bytes(raw[:-1000])
    with pytest.raises(DataError, match=r"test_batch.bin: 14365 bytes is not a whole number of "
                                        r"CIFAR-10 records of 3073 bytes"):
        load("cifar10", "test", data_dir=tmp_path, verify=False)
    with pytest.raises(DataError, match=r"test_batch.bin: md5 is"):
        load("cifar10", "test", data_dir=tmp_path)


# ------------------------------------------------------------------ Kaggle CSV


@pytest.fixture(scope="module")
def kaggle_faces(faces15_train):
    """40 real faces with Kaggle's 15 keypoints; like Kaggle, many lack 11 of them."""
    rng = np.random.default_rng(7)
    x, y = faces15_train.x[:40], faces15_train.y[:40].copy()
    partial = rng.random(40) < 0.5
    y[partial, 2:] = np.nan  # only the eye centres
    y[3, 10] = np.nan  # a single missing nose tip
    return x, y


def test_kaggle_csv_roundtrip_keeps_missing_as_nan(tmp_path, kaggle_faces):
    x, y = kaggle_faces
    d = tmp_path / "facial_keypoints"
    d.mkdir()
    write_kaggle_csv(d / "training.csv", x, y, KAGGLE15_NAMES)
    header = (d / "training.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["left_eye_center_x", "left_eye_center_y", "right_eye_center_x"]
    assert header[-2:] == ["mouth_center_bottom_lip_y", "Image"] and len(header) == 31
    assert ",," in (d / "training.csv").read_text()  # empty cells, as in Kaggle's file
    ds = load("facial_keypoints", data_dir=tmp_path, verify=False)
    assert ds.x.shape == (40, 96, 96, 1) and ds.y.shape == (40, 15, 2)
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(np.isnan(ds.y), np.isnan(y))
    np.testing.assert_array_equal(ds.y, y)  # NaN == NaN under assert_array_equal
    assert not (ds.y == 0).any()
    assert ds.names == KAGGLE15_NAMES
    with pytest.raises(DataError, match=r"training.csv: holds 40 samples, facial_keypoints "
                                        r"train has 7049"):
        load("facial_keypoints", data_dir=tmp_path)


def test_kaggle_test_csv_has_no_keypoints(tmp_path, kaggle_faces):
    x, _ = kaggle_faces
    path = tmp_path / "test.csv"
    pixels = [" ".join(map(str, img.reshape(-1).tolist())) for img in x[:3]]
    path.write_text("ImageId,Image\n" + "".join(f"{i + 1},{p}\n" for i, p in enumerate(pixels)))
    xb, yb = read_kaggle_csv(path, KAGGLE15_NAMES)
    np.testing.assert_array_equal(xb, x[:3])
    assert yb.shape == (3, 15, 2) and np.isnan(yb).all()


def test_kaggle_row_with_wrong_pixel_count(tmp_path, kaggle_faces):
    x, y = kaggle_faces
    path = tmp_path / "training.csv"
    write_kaggle_csv(path, x[:3], y[:3], KAGGLE15_NAMES)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0]  # drop the last pixel of the second face
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"training.csv: line 3: the Image cell has 9215 pixels, "
                                        r"expected 96×96 = 9216"):
        read_kaggle_csv(path, KAGGLE15_NAMES)


def test_kaggle_bad_cells(tmp_path, kaggle_faces):
    x, y = kaggle_faces
    path = tmp_path / "training.csv"
    write_kaggle_csv(path, x[:2], y[:2], KAGGLE15_NAMES)
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], "abc" + text[1][text[1].index(","):]]) + "\n")
    with pytest.raises(DataError, match=r"training.csv: line 2: keypoint cell 'abc' is not a number"):
        read_kaggle_csv(path, KAGGLE15_NAMES)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="training.csv: no header with an 'Image' column"):
        read_kaggle_csv(path, KAGGLE15_NAMES)


# ------------------------------------------------------------------ npz


def test_an_npz_holding_pickled_objects_is_refused_not_unpickled(tmp_path):
    """DESIGN.md: no file is read with pickle. An archive whose array is a pickled object (which
    np.load(allow_pickle=True) would execute) is a DataError naming the file; plain arrays read."""
    path = tmp_path / "poisoned.npz"
    np.savez(path, x=np.array([{"not": "an image"}], dtype=object), y=np.arange(3))
    with pytest.raises(DataError, match=r"poisoned.npz: holds Python objects, not numeric arrays"):
        read_npz(path, ["x"])
    np.testing.assert_array_equal(read_npz(path, ["y"])["y"], np.arange(3))


def test_an_npz_with_a_damaged_array_header_is_called_unreadable_not_objects(tmp_path):
    import io
    import zipfile

    saved = io.BytesIO()
    np.save(saved, np.arange(3))
    path = tmp_path / "damaged.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", saved.getvalue().replace(b"'descr'", b"'dexcr'"))
    with pytest.raises(DataError, match=r"damaged.npz: not a readable .npz archive .*download it again"):
        read_npz(path, ["x"])
