"""The frozen GraphDef retrain.py wrote, which TF1 code and label_image.py load.

The module inlined as constants, input node ``Placeholder`` (float32 [None, height,
width, 3], RGB in [0, 1], already resized), ``input/BottleneckInputPlaceholder`` still
feedable with bottlenecks, and the softmax named by --final_tensor_name. Beside them,
nodes nothing else depends on record what travels with the model: the temperature and
"unknown" threshold with a calibrated softmax (when calibrated), how images were
decoded, and which images it was trained on.

The module is frozen once (module.frozen.FrozenModule); every graph written after that, final or
intermediate, is that module plus a small head built for the current weights. Graphs
are serialised deterministically: the same weights give the same bytes.
"""

import json

import numpy as np
import tensorflow as tf

from retrain.data import storage
from retrain.module.frozen import MODULE_OUTPUT_NODE, serialize

BOTTLENECK_INPUT_NODE = "input/BottleneckInputPlaceholder"
WEIGHTS_NODE = "final_retrain_ops/weights/final_weights"
BIASES_NODE = "final_retrain_ops/biases/final_biases"
LOGITS_NODE = "final_retrain_ops/Wx_plus_b/add"
TEMPERATURE_NODE = "calibration/temperature"
UNKNOWN_THRESHOLD_NODE = "calibration/unknown_threshold"
FAST_JPEG_DECODE_NODE = "preprocessing/fast_jpeg_decode"
TRAINING_SPLIT_NODE = "retrain/training_split"


def calibrated_output_name(final_tensor_name: str) -> str:
    """The node of the calibrated softmax beside final_tensor_name."""
    return final_tensor_name + "_calibrated"


def head_graph_def(
    *,
    weights: np.ndarray,
    biases: np.ndarray,
    final_tensor_name: str,
    temperature: float | None = None,
    unknown_threshold: float | None = None,
    fast_jpeg_decode: bool = False,
    training_split: dict | None = None,
) -> tf.compat.v1.GraphDef:
    """The nodes after the module, reading its output node MODULE_OUTPUT_NODE.

    Args:
      weights: float32 [dim, classes]; biases: float32 [classes].
      temperature: when given, adds calibrated_output_name(final_tensor_name) =
        softmax(logits / temperature) and the TEMPERATURE_NODE constant.
      unknown_threshold: when given, the UNKNOWN_THRESHOLD_NODE constant (a
        calibrated top score below it means "unknown").
      training_split: when given, the TRAINING_SPLIT_NODE constant: JSON of which images
        the model was trained on (data.image_lists.ImageLists.record).
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
        if training_split:
            with tf.name_scope("retrain"):
                tf.constant(json.dumps(training_split, sort_keys=True), name="training_split")
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
        training_split=model.training_split,
    )


def graph_def_of(model) -> tf.compat.v1.GraphDef:
    """The whole frozen classifier for a TrainedModel (see retrain.model), as a GraphDef."""
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
