"""convscope: a ConvNet toolbox for imaging data.

Every layer of the lecture is a pair of pure functions in :mod:`convscope.ops` (forward and its
hand-written derivative), on NumPy arrays or PyTorch tensors, channels-last (N×H×W×D).
"""

from convscope.errors import ConfigError, ConvscopeError, ShapeError

__version__ = "0.1.0"
__all__ = ["ConfigError", "ConvscopeError", "ShapeError", "__version__"]
