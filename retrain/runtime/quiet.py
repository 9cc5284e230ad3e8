"""Muting TensorFlow's C++ chatter on stderr around calls that print it.

TensorFlow, the TFLite converter and interpreters print start-up and progress lines
from C++ (oneDNN, CUDA drivers not found, "Created TensorFlow Lite XNNPACK delegate",
"fully_quantize: 0, ..."), bypassing Python's logging and TF_CPP_MIN_LOG_LEVEL. On a
working run they look like errors and bury the tool's own lines. Python exceptions
still surface; at DEBUG verbosity nothing is muted.
"""

import contextlib
import os
import sys

from absl import logging


@contextlib.contextmanager
def muted_stderr():
    """Sends file descriptor 2 to /dev/null for the duration, unless logging at DEBUG."""
    if logging.level_debug() or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def tensorflow_warnings_muted():
    """Keeps TensorFlow's own Python warnings (its "tensorflow" logger) quiet for the duration.

    Saving a model (SavedModel export, TFLite conversion) after a lookup table was made
    earlier in the process warns that a TF1 collection cannot hold it, "probably safe to
    ignore", rightly: TF2 never reads that collection.
    """
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    if not logging.level_debug():
        logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


class _RetracingFilter:
    """Drops TensorFlow's "triggered tf.function retracing" warning."""

    def filter(self, record) -> bool:
        return "tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def retracing_warnings_muted():
    """Mutes TensorFlow's retracing warning for the duration: runs one after another in a
    process (retrain-compare) each trace their own trainer once, rightly, and TensorFlow
    counts those traces together as if one function retraced."""
    import tensorflow as tf

    found = _RetracingFilter()
    tf.get_logger().addFilter(found)
    try:
        yield
    finally:
        tf.get_logger().removeFilter(found)
