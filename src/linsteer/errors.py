"""The one error type users see: a one-line message saying what is wrong and how to fix it."""


class LinsteerError(ValueError):
    """Bad input or an unusable environment. The CLI prints the message on one line and exits 2."""
