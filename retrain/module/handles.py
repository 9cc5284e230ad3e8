"""What --tfhub_module may name, and what to say when the module it names cannot be had.

A module is named by a URL (tfhub.dev, which now sends models to Kaggle Models, or
kaggle.com/models), a Kaggle Models handle (owner/model/framework/variation[/version],
e.g. google/efficientnet-v2/TensorFlow2/imagenet21k-b0-feature-vector/1), or a local
folder holding an unpacked module (a path to the saved_model.pb or tfhub_module.pb
inside one means its folder). When a download fails, the message says which address,
why, and the ways that work offline.
"""

import errno
import os
import re
import socket
import urllib.error
import urllib.parse

from retrain.data import storage
from retrain.errors import UserError, first_line

# Files whose folder is the module: a path to one of them means the folder.
MODULE_FILES = ("saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb")

KAGGLE_MODELS = "https://www.kaggle.com/models"
KAGGLE_INSTALL_HINT = 'pip install "retrain[kaggle]"'
# owner/model/framework/variation[/version], for the frameworks TensorFlow loads.
_KAGGLE_HANDLE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+/(tensorflow1|tensorflow2)/[\w.-]+(/[0-9]+)?", re.IGNORECASE)
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


def kaggle_handle(handle: str) -> str | None:
    """The Kaggle Models handle (owner/model/framework/variation[/version]) that handle is,
    without a trailing slash; None for URLs, other names, and paths that exist here."""
    stripped = handle.rstrip("/")
    if is_url(handle) or not _KAGGLE_HANDLE.fullmatch(stripped) or os.path.exists(handle):
        return None
    return stripped


def kaggle_url(handle: str) -> str:
    """The Kaggle Models address of a handle (what tensorflow_hub resolves)."""
    return f"{KAGGLE_MODELS}/{handle}"


def has_version(handle: str) -> bool:
    """Whether a Kaggle handle names its version (five parts)."""
    return handle.count("/") == 4


def unversioned_without_kagglehub(handle: str) -> UserError:
    return UserError(
        f"Module {handle} names no version: add one ({handle}/1, as its Kaggle page lists them), or "
        f"{KAGGLE_INSTALL_HINT} so kagglehub can look up the latest."
    )


def module_folder(handle: str) -> str:
    """handle, or the folder of the module file it names (a path to .../saved_model.pb)."""
    if not is_url(handle) and storage.basename(handle) in MODULE_FILES:
        return storage.dirname(handle) or "."
    return handle


def not_found(handle: str) -> UserError:
    """For a local path that does not exist."""
    return UserError(
        f"TF-Hub module '{handle}' not found: pass a module URL (https://tfhub.dev/... or {KAGGLE_MODELS}/...), "
        "a Kaggle handle (owner/model/TensorFlow2/variation/version), or a local folder holding an unpacked "
        "module, with --tfhub_module."
    )


def download_failure(handle: str, error: BaseException) -> UserError:
    """The message for a module that could not be downloaded or loaded: what failed and what to do."""
    remote = is_url(handle) or kaggle_handle(handle) is not None
    host = _host(handle) if is_url(handle) else "Kaggle"
    status = _http_status(error)
    if status is not None and remote:
        moved = (f"tfhub.dev now sends models to Kaggle Models, and some of its addresses answer 403 or 404: "
                 f"find the model on {KAGGLE_MODELS} and pass that address ({_EXAMPLE}); or "
                 if "tfhub.dev" in handle else "Check the handle (and, for a private model, your Kaggle "
                 "credentials), or ")
        return UserError(f"Cannot download module {handle}: {host} answered {status}. " + moved + _DOWNLOAD)
    unreachable = (_find(error, urllib.error.URLError) or _find(error, socket.timeout) or _network_os_error(error)
                   or _requests_connection_error(error))
    if unreachable is not None and remote:
        reason = first_line(getattr(unreachable, "reason", unreachable))
        return UserError(
            f"Cannot download module {handle}: this machine cannot reach {host} ({reason}). To work "
            "without network, " + _DOWNLOAD
        )
    return UserError(
        f"Could not load TF-Hub module '{handle}' ({first_line(error)}). Download it once "
        "and pass its directory with --tfhub_module, or set TFHUB_CACHE_DIR to a "
        "cache that holds it."
    )


def _http_status(error: BaseException) -> str | None:
    """'403 Forbidden' from urllib's HTTPError or requests' (kagglehub), else None."""
    http = _find(error, urllib.error.HTTPError)
    if http is not None:
        return f"{http.code} {http.reason}"
    response = getattr(_find(error, OSError), "response", None)  # requests.HTTPError is an OSError.
    code = getattr(response, "status_code", None)
    return f"{code} {getattr(response, 'reason', '') or ''}".strip() if code else None


def _requests_connection_error(error: BaseException):
    """requests' ConnectionError or Timeout (how kagglehub fails offline), else None."""
    found = _find(error, OSError)
    kind = type(found)
    return found if found is not None and kind.__module__.startswith("requests") and kind.__name__ in (
        "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout") else None


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

