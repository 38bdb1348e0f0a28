"""Loaders on the real files of ../shared/data: counts, shapes and published figures."""

import numpy as np
import pytest

from convscope.data import IBUG68_NAMES, KAGGLE15_NAMES, DataError, load, resolve_data_dir
from convscope.errors import ConfigError


def test_mnist_train_counts_and_pixels(mnist_train):
    ds = mnist_train
    assert ds.x.shape == (60000, 28, 28, 1) and ds.x.dtype == np.uint8
    assert ds.y.dtype == np.int64
    assert np.bincount(ds.y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851,
                                          5949]
    assert ds.x.mean() == pytest.approx(33.318, abs=1e-3)
    assert ds.x.std() == pytest.approx(78.567, abs=1e-3)
    assert ds.names == tuple("0123456789")
    assert "60000" in ds.description and "mnist.npz" in ds.description


def test_mnist_test_counts(mnist_test):
    assert mnist_test.x.shape == (10000, 28, 28, 1)
    assert np.bincount(mnist_test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                  974, 1009]
    assert mnist_test.x.mean() == pytest.approx(33.791, abs=1e-3)


def test_fashion_mnist(fashion_train):
    assert fashion_train.x.shape == (60000, 28, 28, 1)
    assert np.bincount(fashion_train.y).tolist() == [6000] * 10
    assert fashion_train.x.mean() == pytest.approx(72.94, abs=5e-3)
    assert fashion_train.names[0] == "T-shirt/top" and fashion_train.names[9] == "Ankle boot"


def test_cifar10_train(cifar_train):
    ds = cifar_train
    assert ds.x.shape == (50000, 32, 32, 3) and ds.x.dtype == np.uint8
    assert ds.x.flags.c_contiguous
    assert np.bincount(ds.y).tolist() == [5000] * 10
    assert ds.y[:5].tolist() == [6, 9, 9, 4, 1]
    assert np.bincount(ds.y[:10000]).tolist() == [1005, 974, 1032, 1016, 999, 937, 1030, 1001,
                                                  1025, 981]
    means = ds.x.reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(means, [0.4914, 0.4822, 0.4465], atol=1e-4)
    # channels-last: row 0's red plane starts 59, 43, 50; its blue plane ends 140, 84, 72
    assert ds.x[0, 0, :3, 0].tolist() == [59, 43, 50]
    assert ds.x[0, 31, -3:, 2].tolist() == [140, 84, 72]
    assert ds.names[0] == "airplane" and ds.names[9] == "truck"


def test_cifar10_test(cifar_test):
    assert cifar_test.x.shape == (10000, 32, 32, 3)
    assert np.bincount(cifar_test.y).tolist() == [1000] * 10
    assert cifar_test.y[:5].tolist() == [3, 8, 8, 0, 6]


@pytest.mark.parametrize(("size", "splits"), [(28, ("train", "val", "test")), (64, ("val",))])
def test_adrenal3d_splits(data_dir, size, splits):
    counts = {"train": [929, 259], "val": [76, 22], "test": [229, 69]}
    for split in splits:
        expected = counts[split]
        ds = load("adrenal3d", split, data_dir=data_dir, size=size)
        assert ds.x.shape == (sum(expected), size, size, size, 1)
        assert np.bincount(ds.y).tolist() == expected
        assert set(np.unique(ds.x)) <= {0, 255}
        assert ds.names == ("normal", "hyperplasia")


def test_faces68(faces_train):
    ds = faces_train
    assert ds.x.shape == (3462, 96, 96, 1) and ds.y.shape == (3462, 68, 2)
    assert ds.y.dtype == np.float32 and ds.names == IBUG68_NAMES
    assert ds.x.mean() == pytest.approx(91.8, abs=0.05)
    assert not np.isnan(ds.y).any()


def test_faces68_kaggle15_convention(faces_train, faces15_train):
    """Kaggle's left is the subject's left: on the image's right side, at larger x."""
    k15, k68 = faces15_train.y, faces_train.y
    assert k15.shape == (3462, 15, 2) and faces15_train.names == KAGGLE15_NAMES
    name = {n: i for i, n in enumerate(KAGGLE15_NAMES)}
    np.testing.assert_allclose(k15[:, name["left_eye_center"]], k68[:, 42:48].mean(axis=1),
                               rtol=1e-6)
    np.testing.assert_array_equal(k15[:, name["nose_tip"]], k68[:, 30])

    def share(a, b, axis):
        """Fraction of faces where keypoint a lies at a larger x (axis 0) or y (axis 1) than b."""
        return (k15[:, name[a], axis] > k15[:, name[b], axis]).mean()

    assert share("left_eye_center", "right_eye_center", 0) > 0.99
    assert share("mouth_left_corner", "mouth_right_corner", 0) > 0.99
    assert share("left_eye_outer_corner", "left_eye_inner_corner", 0) > 0.99
    assert share("right_eye_inner_corner", "right_eye_outer_corner", 0) > 0.99
    assert share("mouth_center_bottom_lip", "mouth_center_top_lip", 1) > 0.99
    assert share("left_eye_center", "left_eyebrow_inner_end", 1) > 0.99
    assert share("mouth_center_top_lip", "nose_tip", 1) > 0.99


def test_faces68_test_split(data_dir):
    ds = load("faces68", "test", data_dir=data_dir)
    assert ds.x.shape == (770, 96, 96, 1)
    assert ds.x.mean() == pytest.approx(90.7, abs=0.05)


def test_load_rejects_unknown_name_split_option(data_dir):
    with pytest.raises(ConfigError, match="unknown data set 'mnits'"):
        load("mnits", data_dir=data_dir)
    with pytest.raises(ConfigError, match="not 'val'"):
        load("mnist", "val", data_dir=data_dir)
    with pytest.raises(ConfigError, match="no option 'size'"):
        load("mnist", data_dir=data_dir, size=28)
    with pytest.raises(ConfigError, match="kaggle15"):
        load("faces68", data_dir=data_dir, keypoints="kaggle30")


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(DataError) as e:
        load("cifar10", data_dir=tmp_path)
    msg = str(e.value)
    assert "data_batch_1.bin" in msg and "cifar10_train_1.npz" in msg and str(tmp_path) in msg
    assert "convscope data fetch cifar10" in msg


def test_missing_kaggle_files_say_how_to_get_them(tmp_path):
    """`convscope data fetch facial_keypoints` cannot download (Kaggle needs an account): the
    message gives the manual steps instead of pointing at a command that only refuses."""
    with pytest.raises(DataError) as e:
        load("facial_keypoints", data_dir=tmp_path)
    msg = str(e.value)
    assert "facial_keypoints/training.csv" in msg and str(tmp_path) in msg
    assert "kaggle competitions download -c facial-keypoints-detection" in msg
    assert "convscope data fetch" not in msg
    with pytest.raises(DataError, match=r"faces68_96.npz.*udacity/P1_Facial_Keypoints"):
        load("faces68", data_dir=tmp_path)


def test_data_dir_resolution(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("CONVSCOPE_DATA", str(data_dir))
    assert resolve_data_dir() == data_dir
    assert resolve_data_dir(tmp_path) == tmp_path
    assert load("adrenal3d", "val").x.shape == (98, 28, 28, 28, 1)
    with pytest.raises(DataError, match=r"\$CONVSCOPE_DATA"):
        monkeypatch.setenv("CONVSCOPE_DATA", str(tmp_path))
        load("adrenal3d", "val")
    monkeypatch.delenv("CONVSCOPE_DATA")
    assert resolve_data_dir().name == "convscope"


def test_corrupt_npz_fails_checksum_naming_the_file(tmp_path, data_dir):
    src = (data_dir / "adrenalmnist3d_28.npz").read_bytes()
    bad = tmp_path / "adrenalmnist3d_28.npz"
    bad.write_bytes(src[:-100])
    with pytest.raises(DataError, match=r"adrenalmnist3d_28.npz: sha256 is .* expected f35bf190"):
        load("adrenal3d", "val", data_dir=tmp_path)
    with pytest.raises(DataError, match="adrenalmnist3d_28.npz: not a readable .npz"):
        load("adrenal3d", "val", data_dir=tmp_path, verify=False)


def test_npz_with_wrong_arrays(tmp_path):
    np.savez(tmp_path / "mnist.npz", images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"mnist.npz: the archive has no array 'x_train'"):
        load("mnist", data_dir=tmp_path, verify=False)
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((3, 28, 28), np.uint8),
             y_train=np.array([0, 1, 10]))
    with pytest.raises(DataError, match=r"mnist.npz: labels range 0…10, expected 0…9"):
        load("mnist", data_dir=tmp_path, verify=False)
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((3, 28, 28), np.uint8),
             y_train=np.array([0, 1, 2]))
    assert len(load("mnist", data_dir=tmp_path, verify=False)) == 3
    with pytest.raises(DataError, match=r"mnist.npz: sha256 is .*, expected 27d6a2ca"):
        load("mnist", data_dir=tmp_path)
