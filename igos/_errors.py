"""Exceptions raised by the igos library."""


class IGOSError(ValueError):
    """Invalid input or option given to an igos function."""


class NonFiniteError(IGOSError):
    """The model (or the optimisation) produced NaN or infinite values."""
