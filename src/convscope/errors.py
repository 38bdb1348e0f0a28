"""convscope's exceptions: each names the layer, what was expected and what was given.

All are subclasses of ``ValueError`` so that code catching ``ValueError`` keeps working.
"""


class ConvscopeError(ValueError):
    """Base class of convscope's errors."""


class ShapeError(ConvscopeError):
    """An array has the wrong number of axes, sizes that do not fit, or an empty output."""


class ConfigError(ConvscopeError):
    """A hyper-parameter or configuration value is invalid (stride 0, rate 1.5, unknown method)."""


def describe_shape(shape) -> str:
    """A shape in the lecture's notation: N×H×W×D (2D), N×T×H×W×D (3D), N×M (flat)."""
    return _named(shape, {2: "N×M", 4: "N×H×W×D", 5: "N×T×H×W×D"})


def describe_filters(shape) -> str:
    """A filter bank's shape in the lecture's notation: H'×W'×D×K (2D), T'×H'×W'×D×K (3D), M×K
    (a fully connected layer's weight matrix)."""
    return _named(shape, {2: "M×K", 4: "H'×W'×D×K", 5: "T'×H'×W'×D×K"})


def _named(shape, names_by_axes) -> str:
    shape = tuple(int(s) for s in shape)
    names = names_by_axes.get(len(shape))
    dims = "×".join(str(s) for s in shape) or "scalar"
    return f"{dims} ({names})" if names else dims
