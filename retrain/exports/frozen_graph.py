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
    bytes (see classifier_bytes), with no copy of the module's 90 MB of constants per
    graph. Thread-safe (intermediate graphs may be written from a callback).
    """

    def __init__(self, extractor: FeatureExtractor, cache_dir: str = ""):
        self.extractor = extractor
        self.cache_path = self._cache_path(cache_dir)
        self._serialized: bytes | None = None
        self._lock = threading.Lock()

    def _cache_path(self, cache_dir: str) -> str:
        from retrain import bottlenecks, cache_records  # The cache's own names.

        extractor = self.extractor
        return cache_records.module_file(cache_dir, "frozen", bottlenecks.mangle_module_name(extractor.cache_name),
                                         f"{extractor.height}x{extractor.width}", extractor.fingerprint, ".pb")

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
        return contents if any(node.name == MODULE_OUTPUT_NODE for node in graph_def.node) else None

    def _write_cached(self) -> None:
        if self.cache_path and not storage.exists(self.cache_path):
            try:
                storage.write_bytes(self.cache_path, self._serialized)
            except OSError:
                pass  # A read-only cache: the next run freezes again.



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


def classifier_bytes(module_bytes: bytes, head: tf.compat.v1.GraphDef) -> bytes:
    """The serialised frozen classifier: the module's GraphDef bytes followed by the head's.

    Protocol buffers merge concatenated messages, repeated fields appending: the bytes
    parse as one GraphDef holding the module's nodes, then the head's.
    """
    head_only = tf.compat.v1.GraphDef()
    head_only.node.extend(head.node)  # The module's versions and library stay as they are.
    return module_bytes + serialize(head_only)


def serialize(graph_def: tf.compat.v1.GraphDef) -> bytes:
    """The GraphDef's bytes, the same for the same graph on every run (map fields sorted)."""
    return graph_def.SerializeToString(deterministic=True)


def structure(graph_def: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """A copy without constant values: TensorBoard's graph tab shows it, at a tiny fraction of the size.

    Copied node by node, so that no second copy of the constants exists at once.
    """
    light = tf.compat.v1.GraphDef()
    light.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        copy = light.node.add()
        copy.CopyFrom(node)
        if copy.op == "Const" and "value" in copy.attr:
            tensor = copy.attr["value"].tensor
            tensor.ClearField("tensor_content")
            for field in ("float_val", "int_val", "int64_val", "string_val", "bool_val", "half_val", "double_val"):
                tensor.ClearField(field)
    return light


def _head_of(model) -> tf.compat.v1.GraphDef:
    calibration = model.calibration
    return head_graph_def(
        weights=model.weights,
        biases=model.biases,
        final_tensor_name=model.final_tensor_name,
        temperature=calibration.temperature if calibration else None,
        unknown_threshold=calibration.unknown_threshold if calibration else None,
        fast_jpeg_decode=model.preprocessing.fast_jpeg_decode,
    )


def graph_def_of(model) -> tf.compat.v1.GraphDef:
    """The whole frozen classifier for a TrainedModel (see exports.model), as a GraphDef."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(classifier_bytes(model.frozen_module.serialized, _head_of(model)))
    return graph_def


def structure_of(model) -> tf.compat.v1.GraphDef:
    """structure(graph_def_of(model)), without ever holding the whole graph twice."""
    light = structure(model.frozen_module.graph_def)
    light.node.extend(_head_of(model).node)
    return light


def write(path: str, model, options=None) -> None:
    """Writes the frozen classifier of a TrainedModel to path, atomically."""
    del options  # Nothing to choose.
    storage.write_bytes(path, classifier_bytes(model.frozen_module.serialized, _head_of(model)))
