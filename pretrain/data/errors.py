"""The data errors: one line naming the file, folder or config key and what was expected."""
from __future__ import annotations


class DataError(ValueError):
    """Bad or missing data; the message names the path and what was expected."""


class ImageReadError(DataError):
    """An image file that cannot be read or is refused; the message names the file and the reason."""


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
