"""The exception types the command-line tools turn into a clear message, and how errors are quoted."""

import importlib


class UserError(Exception):
    """A problem with the user's input, flags or files, explained in its message.

    The CLIs print the message as one line and exit non-zero, with no traceback;
    anything else that escapes is a bug.
    """


class ImageError(Exception):
    """One file could not be read or decoded as an image; the message names it.

    Runs skip such a file with a warning instead of stopping.
    """


def require_modules(install_hint: str, *names: str) -> None:
    """Raises UserError(install_hint) unless every named module imports: how a missing optional
    extra becomes one line naming its pip install, instead of an ImportError traceback."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UserError(install_hint) from e


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during long work; the message says what was kept and how to resume."""


def first_line(error: BaseException) -> str:
    """An exception's message as one line (its first), or its type's name when it has none.

    Library errors (protobuf, TensorFlow, converters) carry pages of detail; a user
    gets the first line, and the traceback at --logging_verbosity=DEBUG.
    """
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
