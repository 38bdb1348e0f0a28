"""Users' own data: image folders (Pillow), NIfTI volumes (nibabel), 2.5D and RGB-D stacking."""

import numpy as np
import pytest
from PIL import Image

from convscope.data import DataError, image_folder, load, rgbd, stack_channels, stack_slices, volumes
from convscope.errors import ShapeError


def _write_class_folders(root, x, y, names, ext=".png"):
    for n, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        arr = img[..., 0] if img.shape[-1] == 1 else img
        Image.fromarray(arr).save(folder / f"{n:05d}{ext}")


def test_gray_png_folder_roundtrip(tmp_path, mnist_test):
    x, y = mnist_test.x[:60], mnist_test.y[:60]
    _write_class_folders(tmp_path, x, y, mnist_test.names)
    (tmp_path / "3" / "notes.txt").write_text("ignored")
    ds = image_folder(tmp_path)
    assert ds.x.shape == (60, 28, 28, 1) and ds.x.dtype == np.uint8
    assert ds.names == tuple(sorted(set(mnist_test.names[k] for k in y)))
    # files are read class by class in sorted order: compare as multisets per class
    for k, name in enumerate(ds.names):
        want = x[y == int(name)]
        np.testing.assert_array_equal(ds.x[ds.y == k], want)


def test_rgb_png_and_jpeg_folder(tmp_path, cifar_test):
    x, y = cifar_test.x[:20], cifar_test.y[:20]
    _write_class_folders(tmp_path / "png", x, y, cifar_test.names)
    ds = image_folder(tmp_path / "png")
    assert ds.x.shape == (20, 32, 32, 3)
    order = np.argsort(y, kind="stable")
    np.testing.assert_array_equal(ds.x, x[order])
    _write_class_folders(tmp_path / "jpg", x, y, cifar_test.names, ext=".JPG")
    jpg = image_folder(tmp_path / "jpg")
    assert jpg.x.shape == (20, 32, 32, 3)
    assert np.abs(jpg.x.astype(float) - x[order]).mean() < 12  # lossy, but the same pictures
    gray = image_folder(tmp_path / "png", color="gray")
    assert gray.x.shape == (20, 32, 32, 1)


def test_image_folder_resize_and_size_mismatch(tmp_path, mnist_test):
    _write_class_folders(tmp_path, mnist_test.x[:4], np.array([0, 0, 1, 1]), ("a", "b"))
    Image.new("L", (30, 28)).save(tmp_path / "b" / "wide.png")
    with pytest.raises(DataError, match=r"wide.png: image is 30×28 pixels"):
        image_folder(tmp_path)
    assert image_folder(tmp_path, size=(16, 16)).x.shape == (5, 16, 16, 1)


def test_16bit_gray_png_is_scaled_not_clipped(tmp_path, mnist_test):
    """A 16-bit gray PNG (v = 257·g) reads back as g; Pillow's convert("L") clipped it at 255."""
    x = mnist_test.x[:4, ..., 0]
    (tmp_path / "a").mkdir()
    Image.fromarray(x[0]).save(tmp_path / "a" / "0.png")
    for n in (1, 2, 3):
        Image.fromarray(x[n].astype(np.uint16) * 257).save(tmp_path / "a" / f"{n}.png")
    assert Image.open(tmp_path / "a" / "1.png").mode.startswith("I")
    ds = image_folder(tmp_path)
    assert ds.x.dtype == np.uint8 and ds.x.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(ds.x[..., 0], x)
    assert image_folder(tmp_path, color="rgb").x.shape == (4, 28, 28, 3)
    np.testing.assert_array_equal(image_folder(tmp_path, color="rgb").x[..., 1], x)


def test_image_folder_unreadable_file(tmp_path, mnist_test):
    _write_class_folders(tmp_path, mnist_test.x[:4], np.array([0, 0, 1, 1]), ("a", "b"))
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=r"broken.png: cannot read as an image"):
        image_folder(tmp_path)
    with pytest.raises(DataError, match="no class sub-folders"):
        image_folder(tmp_path / "a")


@pytest.fixture(scope="module")
def adrenal_val(data_dir):
    return load("adrenal3d", "val", data_dir=data_dir)


def test_nifti_volumes_roundtrip(tmp_path, adrenal_val):
    import nibabel as nib

    x, y = adrenal_val.x[:6], adrenal_val.y[:6]
    rows = ["file,label"]
    for n, vol in enumerate(x):
        # voxel (i, j, k) = x[t=k, h=j, w=i]
        img = nib.Nifti1Image(np.ascontiguousarray(vol[..., 0].transpose(2, 1, 0)), np.eye(4))
        name = f"case{n}.nii.gz" if n % 2 else f"case{n}.nii"
        nib.save(img, tmp_path / name)
        rows.append(f"{name},{adrenal_val.names[y[n]]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = volumes(tmp_path)
    assert ds.x.shape == (6, 28, 28, 28, 1)
    np.testing.assert_array_equal(ds.x, x)
    assert [ds.names[k] for k in ds.y] == [adrenal_val.names[k] for k in y]


def test_nifti_damaged_and_missing(tmp_path, adrenal_val):
    import nibabel as nib

    nib.save(nib.Nifti1Image(adrenal_val.x[0, ..., 0], np.eye(4)), tmp_path / "a.nii")
    (tmp_path / "b.nii.gz").write_bytes(b"garbage")
    (tmp_path / "labels.csv").write_text("file,label\na.nii,0\nb.nii.gz,1\n")
    with pytest.raises(DataError, match=r"b.nii.gz: cannot read as NIfTI"):
        volumes(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\na.nii,0\nc.nii,1\n")
    with pytest.raises(DataError, match=r"labels.csv: lists c.nii, which is not in"):
        volumes(tmp_path)


def test_stack_slices_2p5d(adrenal_val):
    vol = adrenal_val.x[0]  # T×H×W×1
    s = stack_slices(vol, 3)
    assert s.shape == (28, 28, 28, 3)
    np.testing.assert_array_equal(s[10], np.stack([vol[9, ..., 0], vol[10, ..., 0],
                                                   vol[11, ..., 0]], axis=-1))
    np.testing.assert_array_equal(s[0, ..., 0], vol[0, ..., 0])  # edge: first slice repeated
    assert stack_slices(vol, 5, pad="valid").shape == (24, 28, 28, 5)
    assert (stack_slices(vol, 3, pad="zero")[0, ..., 0] == 0).all()
    assert stack_slices(adrenal_val.x[:4], 3).shape == (4 * 28, 28, 28, 3)


def test_rgbd(cifar_test):
    rgb = cifar_test.x[:5]
    depth = rgb.mean(axis=-1).astype(np.uint8)
    x = rgbd(rgb, depth)
    assert x.shape == (5, 32, 32, 4)
    np.testing.assert_array_equal(x[..., :3], rgb)
    np.testing.assert_array_equal(x[..., 3], depth)
    with pytest.raises(ShapeError, match="same N×H×W"):
        stack_channels(rgb, depth[:, :16])
