"""Figures of a 3D ConvNet show each volume by its middle slice (a report on volumes must render)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from convscope import zoo  # noqa: E402
from convscope.viz import figures  # noqa: E402


def test_middle_slice_of_a_volume():
    volume = np.arange(4 * 3 * 2).reshape(4, 3, 2)
    assert np.array_equal(figures.middle_slice(volume), volume[2])
    assert np.array_equal(figures.middle_slice(volume[0]), volume[0])


def test_feature_maps_and_filters_of_a_3d_convnet_render():
    net = zoo.convnet3d(input_shape=(8, 8, 8, 1))
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 8, 1)).astype(np.float32)
    fig = figures.feature_maps(net, x, channels=4)
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert titles[0].startswith("input 8×8×8×1") and any("conv" in t for t in titles)
    w = net.params()["conv1.w"].value
    assert len(figures.filters(w).axes) >= w.shape[-1]


def test_the_report_shows_the_first_filters_of_a_3d_convnet():
    from convscope.viz.report import first_filters

    net = zoo.convnet3d(input_shape=(8, 8, 8, 1))
    w = first_filters(net)
    assert w is not None and w.shape == (3, 3, 3, 1, 16)
    fig = figures.filters(w)
    assert "T'×H'×W'×D×K" in fig._suptitle.get_text()
    tiles = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(tiles) == 16 and tiles[0].shape == (3, 3)
    np.testing.assert_allclose(tiles[0], figures._tile(w[1, ..., 0, 0]))  # slice t = T'/2 = 1
