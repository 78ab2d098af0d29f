"""Errors that reach people: each carries a message that is shown as one line."""


class MumicError(Exception):
    """Base class of the product's user-facing errors."""


def one_line(exc: BaseException) -> str:
    """What people are shown for an error nobody handled: a product error's own message (its first
    line), else only the error's type, whose text may name server paths (the log keeps it all)."""
    if isinstance(exc, MumicError):
        lines = str(exc).strip().splitlines()
        if lines:
            return lines[0]
    return f"Unexpected error ({type(exc).__name__}); details are in the server log."


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
