"""The settings every op test runs in, shared by the NumPy tests and the PyTorch-backend tests."""

import numpy as np

# (input shape, filter shape, with bias, hyper-parameters)
CONV_SETTINGS = {
    "3x3": ((2, 7, 8, 3), (3, 3, 3, 4), True, {}),
    "stride2-asymmetric-pad": ((2, 7, 8, 3), (3, 3, 3, 4), True, {"stride": 2, "pad": (1, 0, 2, 1)}),
    "stride3x2-pad-per-axis": ((1, 9, 7, 2), (3, 2, 2, 5), True, {"stride": (3, 2), "pad": (2, 1)}),
    "dilate2-pad1": ((2, 9, 8, 2), (3, 3, 2, 3), True, {"dilate": 2, "pad": 1}),
    "dilate-stride": (
        (1, 11, 10, 2), (2, 3, 2, 2), False, {"dilate": (2, 1), "stride": 2, "pad": (0, 1, 1, 0)}
    ),
    "groups2": ((2, 6, 6, 4), (3, 3, 2, 6), True, {"groups": 2, "pad": 1}),
    "depthwise-stride2": ((2, 7, 7, 3), (3, 3, 1, 3), True, {"groups": 3, "stride": 2}),
    "1x1-batch1": ((1, 5, 5, 4), (1, 1, 4, 3), True, {}),
    "5x5-odd": ((2, 9, 11, 1), (5, 5, 1, 2), True, {"pad": 2}),
    "first-layer-K>D": ((2, 6, 7, 1), (3, 3, 1, 10), True, {"pad": (1, 0, 2, 1)}),
    "K<=D-dilate-asymmetric": ((2, 9, 8, 4), (3, 3, 4, 3), True, {"dilate": 2, "pad": (2, 1, 0, 3)}),
    "K>D-groups": ((2, 6, 7, 4), (3, 3, 2, 10), True, {"pad": (1, 0, 2, 1), "groups": 2}),
    "pad-larger-than-kernel": ((1, 4, 4, 2), (2, 2, 2, 2), True, {"pad": (3, 0, 0, 3)}),
    # the dilated taps never read x's middle row: its dE/dx is zero
    "dilate-skips-input-rows": ((2, 3, 5, 2), (2, 2, 2, 3), True, {"dilate": 2, "pad": (0, 0, 1, 0)}),
    "3d": ((2, 5, 6, 4, 2), (2, 3, 2, 2, 3), True, {"stride": (1, 2, 1), "pad": (1, 0, 0, 1, 1, 0)}),
    "3d-dilate-groups": ((1, 6, 5, 5, 4), (2, 2, 2, 2, 4), False, {"dilate": (2, 1, 1), "groups": 2}),
    # one channel per group in 3D: im2col's offset-major columns (a gray volume's first layer, untiled
    # from 16 filters on; a depthwise layer)
    "3d-gray-first-layer": ((2, 4, 5, 6, 1), (3, 3, 3, 1, 16), True, {"pad": 1}),
    "3d-depthwise": ((1, 4, 5, 5, 3), (2, 3, 2, 1, 3), True, {"groups": 3, "pad": (0, 1, 1, 0, 1, 1)}),
}

TRANSPOSE_SETTINGS = {
    "3x3": ((2, 4, 5, 3), (3, 3, 2, 3), True, {}),
    "stride2-crop1": ((2, 4, 5, 3), (3, 3, 2, 3), True, {"stride": 2, "crop": 1}),
    "stride-asymmetric-crop": ((1, 3, 4, 2), (4, 3, 3, 2), True, {"stride": (2, 3), "crop": (1, 0, 0, 2)}),
    "dilate": ((2, 4, 4, 2), (2, 2, 3, 2), False, {"dilate": 2, "stride": 2}),
    "groups2": ((2, 4, 4, 4), (3, 3, 3, 4), True, {"groups": 2, "stride": 2, "crop": (0, 1)}),
    "3d": ((1, 3, 3, 4, 2), (2, 2, 3, 3, 2), True, {"stride": (2, 1, 2), "crop": (0, 1, 1, 0, 0, 0)}),
}



def conv_inputs(x_shape, w_shape, bias, bias_size, seed=1):
    """Seeded float64 (x, w, b) for a convolution setting."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(bias_size) if bias else None
    return rng.standard_normal(x_shape), rng.standard_normal(w_shape), b


# (input shape, hyper-parameters)
POOL_SETTINGS = {
    "2x2": ((2, 8, 8, 3), {"kernel": 2}),
    "3x3-stride2-overlapping": ((2, 9, 9, 2), {"kernel": 3, "stride": 2}),
    "3x3-stride2-pad1": ((1, 8, 7, 2), {"kernel": 3, "stride": 2, "pad": 1}),
    "asymmetric-pad-stride3": ((2, 7, 9, 2), {"kernel": (2, 3), "stride": (1, 3), "pad": (1, 0, 0, 2)}),
    "odd-batch1": ((1, 5, 5, 1), {"kernel": 2, "stride": 1}),
    "3x3-stride2-pad-after": ((2, 8, 7, 2), {"kernel": 3, "stride": 2, "pad": (0, 1, 0, 1)}),
    "pad-after-on-one-axis": ((1, 7, 8, 2), {"kernel": 3, "stride": 2, "pad": (1, 1, 0, 1)}),
    "2x2-tiling-with-pad-after": ((2, 7, 7, 2), {"kernel": 2, "pad": (0, 1, 0, 1)}),
    "2x2-tiling-with-pad-before": ((1, 7, 5, 2), {"kernel": 2, "pad": (1, 0, 1, 0)}),
    "3x2-tiling": ((2, 6, 8, 3), {"kernel": (3, 2)}),
    "1x3-tiling-one-channel": ((1, 4, 9, 1), {"kernel": (1, 3)}),
    "3d-tiling": ((2, 4, 6, 4, 2), {"kernel": (2, 3, 2)}),
    "3d-pad1": ((1, 5, 6, 5, 2), {"kernel": 3, "stride": 2, "pad": 1}),
    "3d-pad-after": ((2, 5, 4, 6, 1), {"kernel": 3, "stride": 2, "pad": (0, 1, 0, 1, 0, 1)}),
    "3d": ((2, 4, 6, 5, 2), {"kernel": (2, 2, 3), "stride": (2, 1, 2), "pad": (0, 1, 1, 0, 1, 1)}),
}


def distinct(shape, seed=0):
    """Values at least 1e-2 apart, so every max is unique and stays so under ε = 1e-6 steps."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(np.prod(shape))).reshape(shape) * 1e-2
