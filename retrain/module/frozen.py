"""A module frozen once: its graph with the weights as constants, kept beside the cache.

Every graph a run writes (final, intermediate, one per module in a comparison) is the
frozen module plus a small head; freezing is the expensive part (a second and a few
hundred MB for Inception v3), so it is done once per module and, with a cache folder,
kept there under the module's fingerprint and input size for later runs. A module
without a fingerprint (unknown files, or weights tuned in this process) is never kept:
another module could be found under the same name next time.
"""

import threading

import tensorflow as tf
from absl import logging

from retrain.cache import layout
from retrain.data import storage
from retrain.module import scan
from retrain.module.extractor import FeatureExtractor
from retrain.runtime import quiet

# The frozen module's input, float32 [None, height, width, 3], and output, float32 [None, dim].
INPUT_NODE = "Placeholder"
MODULE_OUTPUT_NODE = "module/feature_vector"


def freeze_module(extractor: FeatureExtractor) -> tf.compat.v1.GraphDef:
    """The module alone as a frozen GraphDef: INPUT_NODE -> MODULE_OUTPUT_NODE float32 [None, dim].

    The expensive part of exporting: variables become constants and the module's
    functions are inlined.
    """
    spec = tf.TensorSpec([None, extractor.height, extractor.width, 3], tf.float32, name=INPUT_NODE)
    function = tf.function(extractor.extract, input_signature=[spec]).get_concrete_function()
    with quiet.tensorflow_warnings_muted():
        graph_def = _frozen_graph_def(function)
    output = function.outputs[0].name.split(":")[0]
    # Variables become constants named after a counter of the process ("87"), which
    # changes with whatever ran before: name them by their order instead, so the same
    # module always gives the same graph.
    numbered = [node.name for node in graph_def.node if node.name.isdigit()]
    renames = {name: f"module/variable_{i}" for i, name in enumerate(numbered)}
    renames[output] = MODULE_OUTPUT_NODE  # The function's output Identity: nothing consumes it.
    _rename_nodes(graph_def, renames)
    for node in graph_def.node:
        # Debug info names the functions the nodes came from after a counter of the process
        # ("__inference_call_12287"): the same module frozen twice would differ in bytes.
        node.ClearField("experimental_debug_info")
    if INPUT_NODE not in {node.name for node in graph_def.node}:
        raise RuntimeError(f"node {INPUT_NODE} missing from the frozen module")
    return graph_def


def _frozen_graph_def(function) -> tf.compat.v1.GraphDef:
    """The concrete function's graph with its functions inlined and variables as constants.

    convert_variables_to_constants_v2 then builds a new concrete function around that
    GraphDef, which costs Inception v3 five more seconds and a gigabyte of copies; only
    the GraphDef is needed here, so its two steps are called directly when this
    TensorFlow has them.
    """
    from tensorflow.python.framework import convert_to_constants

    try:
        data = convert_to_constants._FunctionConverterDataInEager(
            func=function, lower_control_flow=True, aggressive_inlining=False
        )
        graph_def, _ = convert_to_constants._replace_variables_by_constants(converter_data=data)
        return graph_def
    except AttributeError:  # Renamed in another TensorFlow: the public way.
        return convert_to_constants.convert_variables_to_constants_v2(function).graph.as_graph_def()


def _rename_nodes(graph_def: tf.compat.v1.GraphDef, renames: dict[str, str]) -> None:
    """Renames nodes in place, and every input that refers to them ("x", "x:1", "^x")."""
    for node in graph_def.node:
        node.name = renames.get(node.name, node.name)
        for i, name in enumerate(node.input):
            control = name.startswith("^")
            base, colon, port = name.lstrip("^").partition(":")
            if base in renames:
                node.input[i] = ("^" if control else "") + renames[base] + colon + port


class FrozenModule:
    """A module's frozen GraphDef, made once and shared by every graph written.

    Freezing Inception v3 takes a second and a few hundred MB; with a cache_dir the
    result is kept there, keyed by the module's fingerprint and input size, and later
    runs read it back in a fraction of a second. A cache that cannot be written is
    simply not used. It is held serialised: graphs are written by appending a head's
    bytes (exports.frozen_graph.classifier_bytes), with no copy of the module's 90 MB of constants per
    graph. Thread-safe (intermediate graphs may be written from a callback).
    """

    def __init__(self, extractor: FeatureExtractor, cache_dir: str = ""):
        self.extractor = extractor
        self.cache_path = self._cache_path(cache_dir)
        self._serialized: bytes | None = None
        self._lock = threading.Lock()

    def _cache_path(self, cache_dir: str) -> str:
        extractor = self.extractor
        return layout.module_file(cache_dir, "frozen", extractor.cache_name, f"{extractor.height}x{extractor.width}",
                                  extractor.fingerprint, ".pb")

    @property
    def serialized(self) -> bytes:
        """The frozen module's GraphDef, serialised deterministically."""
        with self._lock:
            if self._serialized is None:
                self._serialized = self._read_cached() or serialize(freeze_module(self.extractor))
                self._write_cached()
            return self._serialized

    @property
    def graph_def(self) -> tf.compat.v1.GraphDef:
        """The frozen module as a GraphDef (parsed anew at each call)."""
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(self.serialized)
        return graph_def

    def _read_cached(self) -> bytes | None:
        if not self.cache_path:
            return None
        try:
            contents = storage.read_bytes(self.cache_path)
            graph_def = tf.compat.v1.GraphDef()
            graph_def.ParseFromString(contents)
        except Exception:  # Missing, unreadable or damaged: freeze again.
            return None
        if scan.graph_findings(graph_def):
            # Not what this project freezes from a module that passed the scan: someone put it there.
            logging.warning("Ignoring %s: it holds operations that reach outside the model; freezing the module anew.",
                            self.cache_path)
            return None
        return contents if any(node.name == MODULE_OUTPUT_NODE for node in graph_def.node) else None

    def _write_cached(self) -> None:
        if self.cache_path and not storage.exists(self.cache_path):
            try:
                storage.write_bytes(self.cache_path, self._serialized)
            except OSError:
                pass  # A read-only cache: the next run freezes again.


def serialize(graph_def: tf.compat.v1.GraphDef) -> bytes:
    """The GraphDef's bytes, the same for the same graph on every run (map fields sorted)."""
    return graph_def.SerializeToString(deterministic=True)
