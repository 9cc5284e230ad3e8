"""float32 vectors as retrain.py's cache text: numpy's ``str()`` of each value, joined by commas.

That text is the shortest decimal that reads back as the same float32 (``0.33333334``,
``1e-05``). numpy writes it one Python call per value, about 1 us each here: 1.8 ms for a
2,048-value bottleneck, a quarter of what decoding an ordinary photo costs, which is what
limits extraction when the module is cheap or runs on a GPU. With the ``fast`` extra
(``pip install "retrain[fast]"``: orjson, whose compiled Ryu prints the same shortest
decimals), a whole vector takes about 0.1 ms.

The two agree wherever both print positional notation; orjson has other rules for
scientific notation (numpy 2 switches below 1e-4 and, for float32, from 1e6) and writes
non-finite values as ``null``, so values outside [1.001e-4, 999,000) other than zero are
written by numpy either way. The text is the same with or without the extra (tested).
"""

import numpy as np

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
