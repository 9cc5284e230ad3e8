"""What --tfhub_module may name, and what to say when the module it names cannot be had.

A module is named by a URL (tfhub.dev, which now sends models to Kaggle Models, or
kaggle.com/models), or a local folder holding an unpacked module (a path to the
saved_model.pb or tfhub_module.pb inside one means its folder). When a download fails,
the message says which address, why, and the ways that work offline.
"""

import errno
import socket
import urllib.error
import urllib.parse

from retrain.data import storage
from retrain.errors import UserError, first_line

# Files whose folder is the module: a path to one of them means the folder.
MODULE_FILES = ("saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb")

KAGGLE_MODELS = "https://www.kaggle.com/models"
_DOWNLOAD = (
    "download the module on a machine that has network (its page on tfhub.dev or "
    f"{KAGGLE_MODELS} offers it as a .tar.gz), unpack it, copy the folder here and pass it: "
    "--tfhub_module /path/to/module. See \"Getting a module\" in the README."
)
_EXAMPLE = (
    "for retrain's default, https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5 is "
    f"{KAGGLE_MODELS}/google/inception-v3/TensorFlow2/feature-vector/2"
)


def is_url(handle: str) -> bool:
    return handle.startswith(("http://", "https://"))


def module_folder(handle: str) -> str:
    """handle, or the folder of the module file it names (a path to .../saved_model.pb)."""
    if not is_url(handle) and storage.basename(handle) in MODULE_FILES:
        return storage.dirname(handle) or "."
    return handle


def not_found(handle: str) -> UserError:
    """For a local path that does not exist."""
    return UserError(
        f"TF-Hub module '{handle}' not found: pass a module URL (https://tfhub.dev/... or {KAGGLE_MODELS}/...), "
        "or a local folder holding an unpacked module, with --tfhub_module."
    )


def download_failure(handle: str, error: BaseException) -> UserError:
    """The message for a module that could not be downloaded or loaded: what failed and what to do."""
    http = _find(error, urllib.error.HTTPError)
    if http is not None and is_url(handle):
        moved = (f"tfhub.dev now sends models to Kaggle Models, and some of its addresses answer 403 or 404: "
                 f"find the model on {KAGGLE_MODELS} and pass that address ({_EXAMPLE}); or "
                 if "tfhub.dev" in handle else "Check the address, or ")
        return UserError(
            f"Cannot download module {handle}: {_host(handle)} answered {http.code} {http.reason}. " + moved + _DOWNLOAD
        )
    unreachable = _find(error, urllib.error.URLError) or _find(error, socket.timeout) or _network_os_error(error)
    if unreachable is not None and is_url(handle):
        reason = getattr(unreachable, "reason", unreachable)
        return UserError(
            f"Cannot download module {handle}: this machine cannot reach {_host(handle)} ({reason}). To work "
            "without network, " + _DOWNLOAD
        )
    return UserError(
        f"Could not load TF-Hub module '{handle}' ({first_line(error)}). Download it once "
        "and pass its directory with --tfhub_module, or set TFHUB_CACHE_DIR to a "
        "cache that holds it."
    )


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or url


def _find(error: BaseException, kind):
    """error, or the first exception it was raised from or during, of that kind."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _network_os_error(error: BaseException):
    found = _find(error, OSError)
    network = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT}
    return found if found is not None and found.errno in network else None

