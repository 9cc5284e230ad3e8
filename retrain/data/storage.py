"""All file access: local paths through the OS, every other filesystem through TensorFlow.

Every other module reads, writes, lists and stats files through this one, so they need
not know which filesystem a path is on. A path with a scheme (``gs://bucket/photos``,
``ram://cache``, ``s3://...``, ``hdfs://...``) goes to ``tf.io.gfile``, which knows
every filesystem TensorFlow has registered, as retrain.py's ``tf.gfile`` did; a plain
path goes to the OS (same behaviour, less overhead per file, and no TensorFlow import
for the pure-Python parts such as the image walk).

Writes are atomic: a reader sees the old file or the new one, never half of one.
Locally and on filesystems with an atomic rename (``ram://``, HDFS) a file is written
under a temporary name beside its destination and renamed; on object stores (``gs://``,
``s3://``), where rename is copy + delete but an object appears only once its upload is
complete, it is written straight to its name. Files and folders are created with the
permissions the user's umask gives, as any ordinary tool's are.

A new storage backend is one Storage subclass and one entry in ``_BACKENDS``.
"""

import contextlib
import dataclasses
import os
import posixpath
import secrets
import shutil
import stat as stat_module
from typing import BinaryIO, Iterator

# Schemes whose "rename" copies and deletes, but whose objects appear whole on close.
OBJECT_STORE_SCHEMES = ("gs", "s3")


@dataclasses.dataclass(frozen=True)
class FileStat:
    """size in bytes; mtime_ns, nanoseconds since the epoch (0 where unknown, as on ram://)."""

    size: int
    mtime_ns: int


class StorageError(OSError):
    """A filesystem refused an operation; the message says what and where, in one line."""


def scheme(path: str) -> str:
    """The URL scheme of path ('gs' for gs://b/x), or '' for a plain local path."""
    if "://" not in path:  # The common case, first: this runs for every file.
        return ""
    head = path.split("://", 1)[0]
    return head if head.isalnum() else ""


def is_local(path: str) -> bool:
    return not scheme(path)


def join(path: str, *parts: str) -> str:
    """Joins path components with the separator path's filesystem uses."""
    return os.path.join(path, *parts) if is_local(path) else posixpath.join(path, *parts)


def dirname(path: str) -> str:
    return os.path.dirname(path) if is_local(path) else posixpath.dirname(path.rstrip("/"))


def basename(path: str) -> str:
    return os.path.basename(path) if is_local(path) else posixpath.basename(path.rstrip("/"))


def relative_path(path: str, start: str) -> str:
    """path relative to the folder start, with the separators of its filesystem."""
    if is_local(path):
        return os.path.relpath(path, start)
    return posixpath.relpath(path.split("://", 1)[1], start.rstrip("/").split("://", 1)[1])


def _temporary_name(path: str, suffix: str) -> str:
    return join(dirname(path), f".{basename(path)}.{secrets.token_hex(6)}{suffix}")


class Storage:
    """One kind of filesystem. Errors are OSError subclasses (FileNotFoundError, StorageError)."""

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def isdir(self, path: str) -> bool:
        raise NotImplementedError

    def listdir(self, path: str) -> list[str]:
        """The names of the entries of folder path, in no particular order."""
        raise NotImplementedError

    def walk(self, top: str) -> Iterator[tuple[str, list[str], list[str]]]:
        """As os.walk, top-down: (folder, sub-folder names, file names); prune by editing the list."""
        raise NotImplementedError

    def stat(self, path: str) -> FileStat:
        raise NotImplementedError

    def open_read(self, path: str) -> BinaryIO:
        """A seekable binary file object for reading (for headers: read only what you need)."""
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes:
        with self.open_read(path) as f:
            return f.read()

    def makedirs(self, path: str) -> None:
        raise NotImplementedError

    def remove(self, path: str) -> None:
        raise NotImplementedError

    def rmtree(self, path: str) -> None:
        """Removes a folder and everything under it; a missing folder is no error."""
        raise NotImplementedError

    def write_bytes(self, path: str, data: bytes) -> None:
        """Writes data to path atomically, creating parent folders."""
        raise NotImplementedError

    def replaced_directory(self, path: str):
        """A context manager yielding a fresh folder that takes path's place on success."""
        raise NotImplementedError


class LocalStorage(Storage):
    """The machine's own filesystem, through os (atomic rename, umask permissions)."""

    def exists(self, path):
        return os.path.exists(path)

    def isdir(self, path):
        return os.path.isdir(path)

    def listdir(self, path):
        return os.listdir(path)

    def walk(self, top):
        return os.walk(top)

    def stat(self, path):
        result = os.stat(path)
        return FileStat(size=result.st_size, mtime_ns=result.st_mtime_ns)

    def open_read(self, path):
        return open(path, "rb")

    def makedirs(self, path):
        os.makedirs(path, exist_ok=True)

    def remove(self, path):
        os.remove(path)

    def rmtree(self, path):
        shutil.rmtree(path, ignore_errors=True)

    def write_bytes(self, path, data):
        # A cache writes thousands of small files: the folder is made only when missing,
        # and the bytes go straight to the descriptor.
        try:
            temp_path, fd = _create_exclusive(path)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            temp_path, fd = _create_exclusive(path)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(temp_path, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temp_path)
            raise

    @contextlib.contextmanager
    def replaced_directory(self, path):
        path = os.path.abspath(path.rstrip(os.sep) or os.sep)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp_dir = _make_fresh_dir(path, ".tmp")
        try:
            yield temp_dir
            old_dir = None
            if os.path.lexists(path):
                old_dir = _temporary_name(path, ".old")
                os.replace(path, old_dir)
            os.replace(temp_dir, path)
            if old_dir:
                shutil.rmtree(old_dir, ignore_errors=True)
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise


def _create_exclusive(path: str) -> tuple[str, int]:
    """(a new temporary file beside path, its descriptor), with umask permissions.

    tempfile.mkstemp would make it 0600 whatever the umask, and the rename would pass
    that on: other accounts and services could not read the model or a shared cache.
    """
    while True:
        temp_path = _temporary_name(path, ".tmp")
        try:
            return temp_path, os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def _make_fresh_dir(path: str, suffix: str) -> str:
    while True:
        temp_dir = _temporary_name(path, suffix)
        try:
            os.mkdir(temp_dir, 0o777)  # The umask applies, unlike tempfile.mkdtemp's 0700.
            return temp_dir
        except FileExistsError:
            continue


class TensorFlowStorage(Storage):
    """Any filesystem TensorFlow has registered (gs://, ram://, s3://, hdfs://), via tf.io.gfile."""

    def __init__(self):
        import tensorflow as tf  # Only here: local paths need no TensorFlow.

        self._gfile = tf.io.gfile
        self._errors = tf.errors

    @contextlib.contextmanager
    def _errors_as_os_errors(self, what: str, path: str):
        try:
            yield
        except self._errors.NotFoundError as e:
            raise FileNotFoundError(f"{path} not found") from e
        except self._errors.OpError as e:
            message = (e.message or type(e).__name__).strip().splitlines()[0]
            raise StorageError(f"cannot {what} {path}: {message}") from e

    def exists(self, path):
        with self._errors_as_os_errors("look up", path):
            return self._gfile.exists(path)

    def isdir(self, path):
        with self._errors_as_os_errors("look up", path):
            if not self._gfile.isdir(path):
                return False
            # Some filesystems (ram://) call any prefix of a file name a folder: "ram://x/c"
            # is one when "ram://x/c.index" exists. A real folder's entries are inside it.
            children = self._gfile.listdir(path)
            return not children or self._gfile.exists(posixpath.join(path, children[0].rstrip("/")))

    def listdir(self, path):
        with self._errors_as_os_errors("list", path):
            return [name.rstrip("/") for name in self._gfile.listdir(path)]

    def walk(self, top):
        with self._errors_as_os_errors("list", top):
            for root, dirs, files in self._gfile.walk(top):
                names = [d.rstrip("/") for d in dirs]
                yield root, names, files
                dirs[:] = names  # Pruning the yielded list prunes the walk, as with os.walk.

    def stat(self, path):
        with self._errors_as_os_errors("stat", path):
            result = self._gfile.stat(path)
        return FileStat(size=int(result.length), mtime_ns=int(result.mtime_nsec))

    def open_read(self, path):
        with self._errors_as_os_errors("read", path):
            if not self._gfile.exists(path):
                raise FileNotFoundError(f"{path} not found")
            return self._gfile.GFile(path, "rb")

    def read_bytes(self, path):
        with self._errors_as_os_errors("read", path):
            with self._gfile.GFile(path, "rb") as f:
                return f.read()

    def makedirs(self, path):
        with self._errors_as_os_errors("create", path):
            self._gfile.makedirs(path)

    def remove(self, path):
        with self._errors_as_os_errors("remove", path):
            self._gfile.remove(path)

    def rmtree(self, path):
        with contextlib.suppress(FileNotFoundError), self._errors_as_os_errors("remove", path):
            if self._gfile.exists(path):
                self._gfile.rmtree(path)

    def write_bytes(self, path, data):
        with self._errors_as_os_errors("write", path):
            self._gfile.makedirs(dirname(path))
            if scheme(path) in OBJECT_STORE_SCHEMES:
                # The object appears only once its upload is complete.
                with self._gfile.GFile(path, "wb") as f:
                    f.write(data)
                return
            temp_path = _temporary_name(path, ".tmp")
            try:
                with self._gfile.GFile(temp_path, "wb") as f:
                    f.write(data)
                self._gfile.rename(temp_path, path, overwrite=True)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._gfile.remove(temp_path)
                raise

    @contextlib.contextmanager
    def replaced_directory(self, path):
        path = path.rstrip("/")
        temp_dir = _temporary_name(path, ".tmp")
        with self._errors_as_os_errors("write", path):
            self._gfile.makedirs(temp_dir)
        try:
            yield temp_dir
            with self._errors_as_os_errors("write", path):
                self._publish_tree(temp_dir, path)
        finally:
            self.rmtree(temp_dir)

    def _publish_tree(self, source: str, destination: str) -> None:
        """Copies the finished folder source over destination, top-level files last.

        A folder cannot be replaced at once on these filesystems. The old top-level
        files (saved_model.pb) go first and the new ones come last, so a loader that
        opens saved_model.pb never pairs it with the other model's variables.
        """
        if self._gfile.exists(destination):
            for name in self._gfile.listdir(destination):
                entry = posixpath.join(destination, name.rstrip("/"))
                if not self._gfile.isdir(entry):
                    self._gfile.remove(entry)
            self._gfile.rmtree(destination)
        top_files = []
        for root, _, files in self._gfile.walk(source):
            for name in files:
                file_path = posixpath.join(root, name)
                target = posixpath.join(destination, relative_path(file_path, source))
                if root.rstrip("/") == source.rstrip("/"):
                    top_files.append((file_path, target))
                    continue
                self._gfile.makedirs(posixpath.dirname(target))
                self._gfile.copy(file_path, target, overwrite=True)
        self._gfile.makedirs(destination)
        for file_path, target in top_files:
            self._gfile.copy(file_path, target, overwrite=True)


# scheme -> Storage class; a scheme not listed goes to TensorFlow's filesystems.
_BACKENDS: dict[str, type[Storage]] = {"": LocalStorage}
_instances: dict[type[Storage], Storage] = {}


def for_path(path: str) -> Storage:
    """The Storage that handles path."""
    backend = _BACKENDS.get(scheme(path), TensorFlowStorage)
    if backend not in _instances:
        _instances[backend] = backend()
    return _instances[backend]


# The same operations as module functions, each dispatched on its path.


def exists(path: str) -> bool:
    return for_path(path).exists(path)


def isdir(path: str) -> bool:
    return for_path(path).isdir(path)


def listdir(path: str) -> list[str]:
    return for_path(path).listdir(path)


def walk(top: str):
    return for_path(top).walk(top)


def stat(path: str) -> FileStat:
    return for_path(path).stat(path)


def open_read(path: str) -> BinaryIO:
    return for_path(path).open_read(path)


def read_bytes(path: str) -> bytes:
    return for_path(path).read_bytes(path)


def read_text(path: str) -> str:
    """The file's text as UTF-8; bytes that are not UTF-8 become U+FFFD."""
    return read_bytes(path).decode("utf-8", errors="replace")


def makedirs(path: str) -> None:
    for_path(path).makedirs(path)


def remove(path: str) -> None:
    for_path(path).remove(path)


def rmtree(path: str) -> None:
    for_path(path).rmtree(path)


def write_bytes(path: str, data: bytes) -> None:
    """Writes data to path atomically (see the module docstring), creating parent folders."""
    for_path(path).write_bytes(path, data)


def write_text(path: str, text: str) -> None:
    """Writes text as UTF-8 to path atomically, creating parent folders."""
    write_bytes(path, text.encode("utf-8"))


def replaced_directory(path: str):
    """A context manager yielding a fresh folder that replaces the folder at path on success.

    If the body raises, the fresh folder is removed and path is left as it was.
    """
    return for_path(path).replaced_directory(path)


def not_a_file(path: str) -> str:
    """Why path is no regular file that can be read ('' when it is one), without opening it.

    A FIFO named like an image would block whoever opens it, a device could be endless:
    callers skip them. Local paths only (follows links: a link to a file is a file);
    other filesystems hold files and folders alone.
    """
    if not is_local(path):
        return ""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    if stat_module.S_ISREG(mode):
        return ""
    kinds = ((stat_module.S_ISFIFO, "a FIFO (named pipe)"), (stat_module.S_ISSOCK, "a socket"),
             (stat_module.S_ISCHR, "a character device"), (stat_module.S_ISBLK, "a block device"),
             (stat_module.S_ISDIR, "a folder"))
    return next((f"is {kind}, not a file" for test, kind in kinds if test(mode)), "is not a regular file")


def check_writable(folder: str) -> None:
    """Raises OSError unless a file can be created in folder (made if missing)."""
    probe = join(folder, f".retrain-write-check.{secrets.token_hex(6)}")
    store = for_path(folder)
    store.makedirs(folder)
    store.write_bytes(probe, b"")
    store.remove(probe)
