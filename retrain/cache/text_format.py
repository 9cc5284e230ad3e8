"""retrain.py's cache text: numpy's ``str()`` of each float32 value, joined by commas.

That text is the shortest decimal that reads back as the same float32 (``0.33333334``,
``1e-05``), with no spaces, header or newline. numpy writes it one Python call per
value, about 1 us each here: 1.8 ms for a 2,048-value bottleneck, a quarter of what
decoding an ordinary photo costs, which is what limits extraction when the module is
cheap or runs on a GPU. With the ``fast`` extra (``pip install "retrain[fast]"``:
orjson, whose compiled Ryu prints the same shortest decimals), a whole vector takes
about 0.1 ms.

The two agree wherever both print positional notation; orjson has other rules for
scientific notation (numpy 2 switches below 1e-4 and, for float32, from 1e6) and writes
non-finite values as ``null``, so values outside [1.001e-4, 999,000) other than zero are
written by numpy either way. The text is the same with or without the extra (tested).

Reading is the reverse: a file that does not parse or has the wrong length counts as
missing (warned about as retrain.py did: ``Invalid float found, recreating bottleneck``).
"""

import os
import warnings

import numpy as np
from absl import logging

from retrain.data import batching, storage

try:
    import orjson
except ImportError:  # The extra is optional: numpy writes the same text, slower.
    orjson = None

INSTALL_HINT = 'pip install "retrain[fast]" writes the same cache files faster (it counts with a cheap module or a GPU)'

# orjson and numpy print the same digits here, both positionally, in every numpy since 1.14.
_POSITIONAL_LOW, _POSITIONAL_HIGH = 1.001e-4, 999_000.0


def format_float32(values: np.ndarray, compiled: bool = True) -> str:
    """Any float array as comma-separated float32 decimals, as ``",".join(map(str, float32 values))``.

    compiled=False always takes numpy's path (for comparing the two).
    """
    vector = np.ascontiguousarray(values, dtype=np.float32).ravel()
    if orjson is None or not compiled or vector.size == 0:
        return _numpy_text(vector)
    text = orjson.dumps(vector, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode("ascii")
    magnitude = np.abs(vector)  # Comparisons with NaN are False, without a warning.
    positional = (magnitude >= _POSITIONAL_LOW) & (magnitude < _POSITIONAL_HIGH)
    if np.count_nonzero(positional) + np.count_nonzero(vector == 0) == vector.size:
        return text
    elsewhere = ~positional & (vector != 0)
    pieces = text.split(",")
    for index in np.flatnonzero(elsewhere):
        pieces[index] = str(vector[index])
    return ",".join(pieces)


def compiled() -> bool:
    """Whether the compiled writer (the fast extra) is in use."""
    return orjson is not None


def _numpy_text(vector: np.ndarray) -> str:
    return ",".join(str(value) for value in vector)


def _compiled_agrees() -> bool:
    """Whether the installed orjson prints float32 as numpy does (a version that printed
    the float64 value instead would still read back right, but make other files)."""
    sample = np.array([0.1, 1 / 3, 2.5, 0.0, -7.0, 123456.79, 0.00012345], np.float32)
    try:
        return format_float32(sample) == _numpy_text(sample)
    except Exception:  # noqa: BLE001 - any failure means: do not use it.
        return False


if orjson is not None and not _compiled_agrees():
    orjson = None


def format_bottleneck(values: np.ndarray) -> str:
    """float32 [dim] as retrain.py wrote it: shortest round-trip decimals, comma separated."""
    return format_float32(values)


def parse_bottleneck(text: str, dim: int | None = None) -> np.ndarray:
    """Parses format_bottleneck's text into float32 [dim].

    Raises:
      ValueError: a value is not a number, or the count differs from dim.
    """
    with warnings.catch_warnings():
        # Older numpy warns and returns what it parsed where newer numpy raises.
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=np.float32, sep=",")
        except (ValueError, DeprecationWarning) as e:
            raise ValueError(f"not a list of numbers: {e}") from e
    if values.shape[0] == 0:
        raise ValueError("empty")
    if dim is not None and values.shape[0] != dim:
        raise ValueError(f"expected {dim} values, found {values.shape[0]}")
    return values


def write_bottleneck(path: str, values: np.ndarray) -> None:
    """Writes one cache file atomically."""
    storage.write_text(path, format_bottleneck(values))


def read_cached(path: str, dim: int) -> np.ndarray | None:
    """The cached bottleneck at path, float32 [dim], or None when it must be (re)computed.

    None for a missing file, and one that does not parse or has the wrong length
    (warned about, as retrain.py did). Whether it is current for its image is
    cache.records' question.
    """
    try:
        # Bytes that are not text parse as no number: rebuilt like any corrupt file.
        text = storage.read_text(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        logging.warning("Cannot read bottleneck %s (%s), recreating bottleneck", path, e)
        return None
    try:
        return parse_bottleneck(text, dim)
    except ValueError:
        logging.warning("Invalid float found, recreating bottleneck")
        return None


def read_cached_files(paths: list[str], dim: int) -> list[np.ndarray | None]:
    """read_cached for every path, the files read and parsed on all cores at once.

    Python's own parsing holds the interpreter lock, so threads cannot share it; a
    tf.data pipeline reads and parses in C++ instead (4,000 files of 2,048 values:
    0.4-0.8 s on 2 slow cores, against 2 s for numpy in one thread). A file it cannot
    parse is read once more with read_cached, to be warned about and rebuilt as before.
    """
    values: list[np.ndarray | None] = [None] * len(paths)
    for position, vector in _parse_files(paths, dim):
        values[position] = vector
    for i, path in enumerate(paths):
        if values[i] is None:
            values[i] = read_cached(path, dim)
    return values


def _parse_files(paths: list[str], dim: int, batch_size: int = 512):
    """Yields (position, float32 [dim]) for each file of paths that holds dim numbers.

    The others (unreadable, not numbers, another length) are left out silently.
    """
    if not paths:
        return
    import tensorflow as tf  # Only here: the rest of the cache needs no TensorFlow.

    @tf.autograph.experimental.do_not_convert  # Plain ops: AutoGraph would only cost time.
    def parse(index, path):
        values = tf.strings.to_number(tf.strings.split(tf.io.read_file(path), ","), tf.float32)
        return index, tf.ensure_shape(values, [dim])

    dataset = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64), tf.constant(paths)))
    dataset = dataset.map(parse, num_parallel_calls=os.cpu_count() or 1, deterministic=False)
    dataset = batching.untuned(dataset.ignore_errors().batch(batch_size).prefetch(1))
    for indices, vectors in dataset:
        yield from zip(indices.numpy().tolist(), vectors.numpy())
