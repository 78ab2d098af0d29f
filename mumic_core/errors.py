"""Errors that reach people: each carries a message that is shown as one line."""

import re

# An absolute server path (not a URL's path, not a relative name): /a/b/c.png -> …/c.png
_SERVER_PATH = re.compile(r"(?<![\w.~/:@-])(?:/[^\s/'\"(),;:]+)+/?")


class MumicError(Exception):
    """Base class of the product's user-facing errors."""


def without_server_paths(text: str) -> str:
    """``text`` with every absolute server path shortened to its last part (``…/name``)."""
    text = text.replace("sqlite:////", "sqlite:/// /")  # a database file's absolute path, then put back
    return _SERVER_PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text).replace(
        "sqlite:/// …/", "sqlite:///…/"
    )


def one_line(exc: BaseException, explained: tuple[type[BaseException], ...] = ()) -> str:
    """What people are shown for an error: its message's first line, server paths shortened, for
    the product's own errors (and the ``explained`` kinds a caller raised on purpose); else only
    the error's type, whose text may hold internals (the server log keeps it all)."""
    if isinstance(exc, (MumicError, *explained)):
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        lines = str(message).strip().splitlines()
        if lines:
            return without_server_paths(lines[0])
    return f"Unexpected error ({type(exc).__name__}); details are in the server log."


# Errors that services raise with a message written for people (a refused file, a missing id).
REFUSALS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError)


class StaleView(MumicError, RuntimeError):
    """Someone else changed an image's labels after this person's view of it was made."""

    def __init__(self, message: str, image_ids: list[int]) -> None:
        super().__init__(message)
        self.image_ids = image_ids


class ClassError(MumicError, ValueError):
    """A class definition that is refused, with the reason."""


class ModelUnavailable(MumicError, RuntimeError):
    """The configured weights cannot be loaded (offline, missing file, unknown tag)."""


class TrainingError(MumicError, RuntimeError):
    """Training cannot run or did not produce a usable model."""


class ServiceUnavailable(MumicError, RuntimeError):
    """The database, job queue or object store cannot be reached."""
