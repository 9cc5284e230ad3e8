"""The frozen GraphDef retrain.py wrote, which TF1 code and label_image.py load.

The module inlined as constants, input node ``Placeholder`` (float32 [None, height,
width, 3], RGB in [0, 1], already resized), ``input/BottleneckInputPlaceholder`` still
feedable with bottlenecks, and the softmax named by --final_tensor_name. Beside them,
nodes nothing else depends on record what travels with the model: the temperature and
"unknown" threshold with a calibrated softmax (when calibrated), and how images were
decoded.

The module is frozen once (FrozenModule); every graph written after that, final or
intermediate, is that module plus a small head built for the current weights. Graphs
are serialised deterministically: the same weights give the same bytes.
"""

import threading

import numpy as np
import tensorflow as tf

from retrain import quiet, storage
from retrain.hub_module import FeatureExtractor

INPUT_NODE = "Placeholder"
MODULE_OUTPUT_NODE = "module/feature_vector"
BOTTLENECK_INPUT_NODE = "input/BottleneckInputPlaceholder"
WEIGHTS_NODE = "final_retrain_ops/weights/final_weights"
BIASES_NODE = "final_retrain_ops/biases/final_biases"
LOGITS_NODE = "final_retrain_ops/Wx_plus_b/add"
TEMPERATURE_NODE = "calibration/temperature"
UNKNOWN_THRESHOLD_NODE = "calibration/unknown_threshold"
FAST_JPEG_DECODE_NODE = "preprocessing/fast_jpeg_decode"


def calibrated_output_name(final_tensor_name: str) -> str:
    """The node of the calibrated softmax beside final_tensor_name."""
    return final_tensor_name + "_calibrated"


def freeze_module(extractor: FeatureExtractor) -> tf.compat.v1.GraphDef:
    """The module alone as a frozen GraphDef: INPUT_NODE -> MODULE_OUTPUT_NODE float32 [None, dim].

    The expensive part of exporting (seconds for Inception v3): variables become
    constants and the module's functions are inlined.
    """
    from tensorflow.python.framework import convert_to_constants

    spec = tf.TensorSpec([None, extractor.height, extractor.width, 3], tf.float32, name=INPUT_NODE)
    function = tf.function(extractor.extract, input_signature=[spec])
    with quiet.tensorflow_warnings_muted():
        frozen = convert_to_constants.convert_variables_to_constants_v2(function.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    output = frozen.outputs[0].name.split(":")[0]
    # Variables become constants named after a counter of the process ("87"), which
    # changes with whatever ran before: name them by their order instead, so the same
    # module always gives the same graph.
    numbered = [node.name for node in graph_def.node if node.name.isdigit()]
    renames = {name: f"module/variable_{i}" for i, name in enumerate(numbered)}
    renames[output] = MODULE_OUTPUT_NODE  # The function's output Identity: nothing consumes it.
    _rename_nodes(graph_def, renames)
    if INPUT_NODE not in {node.name for node in graph_def.node}:
        raise RuntimeError(f"node {INPUT_NODE} missing from the frozen module")
    return graph_def


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

    Freezing Inception v3 takes seconds; with a cache_dir the result is kept there, keyed
    by the module's fingerprint and input size, and every later run reads it back in a
    fraction of a second. A cache that cannot be written is simply not used.
    Thread-safe, so freezing can start on another thread while training goes on.
    """

    def __init__(self, extractor: FeatureExtractor, cache_dir: str = ""):
        self.extractor = extractor
        self.cache_path = self._cache_path(cache_dir)
        self._graph_def = None
        self._lock = threading.Lock()

    def _cache_path(self, cache_dir: str) -> str:
        extractor = self.extractor
        if not cache_dir or not extractor.fingerprint:
            return ""
        from retrain import bottlenecks  # The cache's own name for a module.

        name = f"{bottlenecks.mangle_module_name(extractor.cache_name)}_{extractor.height}x{extractor.width}"
        return storage.join(cache_dir, ".retrain", "frozen", f"{name}_{extractor.fingerprint}.pb")

    @property
    def graph_def(self) -> tf.compat.v1.GraphDef:
        with self._lock:
            if self._graph_def is None:
                self._graph_def = self._read_cached() or freeze_module(self.extractor)
                self._write_cached()
            return self._graph_def

    def _read_cached(self) -> tf.compat.v1.GraphDef | None:
        if not self.cache_path:
            return None
        try:
            contents = storage.read_bytes(self.cache_path)
            graph_def = tf.compat.v1.GraphDef()
            graph_def.ParseFromString(contents)
        except Exception:  # Missing, unreadable or damaged: freeze again.
            return None
        return graph_def if any(node.name == MODULE_OUTPUT_NODE for node in graph_def.node) else None

    def _write_cached(self) -> None:
        if self.cache_path and not storage.exists(self.cache_path):
            try:
                storage.write_bytes(self.cache_path, serialize(self._graph_def))
            except OSError:
                pass  # A read-only cache: the next run freezes again.

    @property
    def ready(self) -> bool:
        """Whether graph_def will not take long: made already, or cached on disk."""
        return self._graph_def is not None or bool(self.cache_path and storage.exists(self.cache_path))

    def start(self) -> None:
        """Freezes on a background thread, so that graph_def is ready when asked for."""
        threading.Thread(target=lambda: self.graph_def, daemon=True, name="freeze-module").start()


def head_graph_def(
    *,
    weights: np.ndarray,
    biases: np.ndarray,
    final_tensor_name: str,
    temperature: float | None = None,
    unknown_threshold: float | None = None,
    fast_jpeg_decode: bool = False,
) -> tf.compat.v1.GraphDef:
    """The nodes after the module, reading its output node MODULE_OUTPUT_NODE.

    Args:
      weights: float32 [dim, classes]; biases: float32 [classes].
      temperature: when given, adds calibrated_output_name(final_tensor_name) =
        softmax(logits / temperature) and the TEMPERATURE_NODE constant.
      unknown_threshold: when given, the UNKNOWN_THRESHOLD_NODE constant (a
        calibrated top score below it means "unknown").
    """
    weights = np.asarray(weights, np.float32)
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        features = v1.placeholder(tf.float32, [None, weights.shape[0]], name=MODULE_OUTPUT_NODE)
        bottlenecks = v1.placeholder_with_default(features, [None, weights.shape[0]], name=BOTTLENECK_INPUT_NODE)
        with tf.name_scope("final_retrain_ops"):
            with tf.name_scope("weights"):
                w = tf.constant(weights, name="final_weights")
            with tf.name_scope("biases"):
                b = tf.constant(np.asarray(biases, np.float32), name="final_biases")
            with tf.name_scope("Wx_plus_b"):
                logits = tf.add(tf.matmul(bottlenecks, w), b, name="add")
        tf.nn.softmax(logits, name=final_tensor_name)
        with tf.name_scope("calibration"):
            if temperature is not None:
                t = tf.constant(np.float32(temperature), name="temperature")
                calibrated_logits = tf.divide(logits, t, name="scaled_logits")
            if unknown_threshold is not None:
                tf.constant(np.float32(unknown_threshold), name="unknown_threshold")
        if temperature is not None:
            tf.nn.softmax(calibrated_logits, name=calibrated_output_name(final_tensor_name))
        with tf.name_scope("preprocessing"):
            tf.constant(bool(fast_jpeg_decode), name="fast_jpeg_decode")
    graph_def = graph.as_graph_def()
    del graph_def.node[[n.name for n in graph_def.node].index(MODULE_OUTPUT_NODE)]
    return graph_def


def classifier_graph_def(module_graph_def: tf.compat.v1.GraphDef, head: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """The frozen module followed by a head_graph_def, as one GraphDef."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.versions.CopyFrom(module_graph_def.versions)
    graph_def.library.CopyFrom(module_graph_def.library)
    graph_def.node.extend(module_graph_def.node)
    graph_def.node.extend(head.node)
    return graph_def


def serialize(graph_def: tf.compat.v1.GraphDef) -> bytes:
    """The GraphDef's bytes, the same for the same graph on every run (map fields sorted)."""
    return graph_def.SerializeToString(deterministic=True)


def structure(graph_def: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """A copy without constant values: TensorBoard's graph tab shows it, at a tiny fraction of the size."""
    light = tf.compat.v1.GraphDef()
    light.CopyFrom(graph_def)
    for node in light.node:
        if node.op == "Const" and "value" in node.attr:
            tensor = node.attr["value"].tensor
            tensor.ClearField("tensor_content")
            for field in ("float_val", "int_val", "int64_val", "string_val", "bool_val", "half_val", "double_val"):
                tensor.ClearField(field)
    return light


def graph_def_of(model) -> tf.compat.v1.GraphDef:
    """The whole frozen classifier for a TrainedModel (see exports.model)."""
    calibration = model.calibration
    head = head_graph_def(
        weights=model.weights,
        biases=model.biases,
        final_tensor_name=model.final_tensor_name,
        temperature=calibration.temperature if calibration else None,
        unknown_threshold=calibration.unknown_threshold if calibration else None,
        fast_jpeg_decode=model.preprocessing.fast_jpeg_decode,
    )
    return classifier_graph_def(model.frozen_module.graph_def, head)


def write(path: str, model, options=None) -> None:
    """Writes the frozen classifier of a TrainedModel to path, atomically."""
    del options  # Nothing to choose.
    storage.write_bytes(path, serialize(graph_def_of(model)))
