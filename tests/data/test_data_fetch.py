"""fetch(): checksum verification and extraction, on local file:// URLs (no network)."""

import hashlib
import io
import sys
import tarfile

import pytest

from convscope.data import DataError, fetch, load
from convscope.data.formats import write_cifar_binary
from convscope.errors import ConfigError

download = sys.modules["convscope.data.download"]


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_fetch_verifies_and_skips_good_files(tmp_path, monkeypatch):
    src = tmp_path / "server" / "file.gz"
    src.parent.mkdir()
    src.write_bytes(b"payload")
    good = [("mnist/file.gz", src.as_uri(), "md5", _md5(b"payload"))]
    monkeypatch.setitem(download.CANONICAL, "mnist", good)
    dest = tmp_path / "data"
    assert fetch("mnist", dest) == [dest / "mnist" / "file.gz"]
    assert (dest / "mnist" / "file.gz").read_bytes() == b"payload"
    src.unlink()  # present with the right checksum: not downloaded again
    assert fetch("mnist", dest) == [dest / "mnist" / "file.gz"]


def test_fetch_rejects_a_wrong_checksum(tmp_path, monkeypatch):
    src = tmp_path / "file.gz"
    src.write_bytes(b"tampered")
    monkeypatch.setitem(download.CANONICAL, "mnist",
                        [("mnist/file.gz", src.as_uri(), "md5", _md5(b"payload"))])
    with pytest.raises(DataError, match=r"file.gz: downloaded from .* expected"):
        fetch("mnist", tmp_path / "data")
    assert not (tmp_path / "data").exists()  # nothing left behind, not even empty folders


def test_a_failed_download_leaves_no_empty_folders(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    gone = (tmp_path / "nowhere" / "file.gz").as_uri()
    monkeypatch.setitem(download.CANONICAL, "mnist", [("mnist/file.gz", gone, "md5", "0" * 32)])
    with pytest.raises(DataError, match="download from .* failed"):
        fetch("mnist", tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []  # the existing folder stays, mnist/ goes


def test_fetch_extracts_cifar_binary(tmp_path, monkeypatch, cifar_test):
    raw = io.BytesIO()
    write_cifar_binary(tmp_path / "test_batch.bin", cifar_test.x[:10], cifar_test.y[:10])
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.add(tmp_path / "test_batch.bin", arcname="cifar-10-batches-bin/test_batch.bin")
    (tmp_path / "c.tar.gz").write_bytes(raw.getvalue())
    monkeypatch.setitem(download.CANONICAL, "cifar10", [
        ("cifar-10-binary.tar.gz", (tmp_path / "c.tar.gz").as_uri(), "md5", _md5(raw.getvalue()))])
    paths = fetch("cifar10", tmp_path / "data")
    assert [p.name for p in paths] == ["test_batch.bin"]
    assert len(load("cifar10", "test", data_dir=tmp_path / "data", verify=False)) == 10


def test_fetch_manual_and_unknown(tmp_path):
    with pytest.raises(DataError, match="kaggle competitions download"):
        fetch("facial_keypoints", tmp_path)
    with pytest.raises(ConfigError, match="unknown data set 'imagenet'"):
        fetch("imagenet", tmp_path)
