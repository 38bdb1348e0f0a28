"""Shared fixtures: the real data sets of ../shared/data, each loaded once per session."""

from pathlib import Path

import pytest

from convscope.data import load

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (SHARED_DATA / "mnist.npz").is_file():
        pytest.fail(f"real data not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


def _loaded(name, split, **options):
    @pytest.fixture(scope="session")
    def fixture(data_dir):
        return load(name, split, data_dir=data_dir, **options)

    return fixture


mnist_train = _loaded("mnist", "train")
mnist_test = _loaded("mnist", "test")
fashion_train = _loaded("fashion_mnist", "train")
cifar_train = _loaded("cifar10", "train")
cifar_test = _loaded("cifar10", "test")
faces_train = _loaded("faces68", "train")
faces15_train = _loaded("faces68", "train", keypoints="kaggle15")
