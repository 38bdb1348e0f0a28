"""The input layer's own error: a data file is missing, truncated or malformed."""

from convscope.errors import ConvscopeError


class DataError(ConvscopeError):
    """A data file is missing, truncated or malformed.

    The message names the file, says what is wrong with it and how to fix it (where to get the
    file, or which setting points at it). A subclass of ``ValueError`` like all convscope errors.
    """
