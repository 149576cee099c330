"""The data package's user-facing error."""


class DatasetError(ValueError):
    """A problem with the user's data or data options; the message names the path or value."""
