"""Writing files so that a reader never sees half of one.

Every output and cache file goes to a unique temporary name beside its destination
and is renamed into place when complete: after a crash, a Ctrl-C or a full disk the
destination holds either the old file or the new one, and concurrent writers of the
same file never mix their bytes.
"""

import contextlib
import os
import shutil
import tempfile


def write_bytes(path: str, data: bytes) -> None:
    """Writes data to path atomically, creating parent folders."""
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    fd, temp_path = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp_path)
        raise


def write_text(path: str, text: str) -> None:
    """Writes text (UTF-8) to path atomically, creating parent folders."""
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def replaced_directory(path: str):
    """Yields a fresh temporary folder that replaces the folder at path on success.

    If the body raises, the temporary folder is removed and path is left as it was.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temp_dir = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        yield temp_dir
        old_dir = None
        if os.path.exists(path):
            old_dir = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(path) + ".", suffix=".old")
            os.rmdir(old_dir)
            os.replace(path, old_dir)
        os.replace(temp_dir, path)
        if old_dir:
            shutil.rmtree(old_dir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise


def check_writable(path: str) -> None:
    """Raises OSError unless a file could be created in path's folder (made if missing)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=parent, prefix=".retrain-write-check.")
    os.close(fd)
    os.remove(probe)
