"""The only writer of artifacts: frozen graph, labels file, SavedModel, checkpoint.

The frozen graph is what retrain.py wrote and TF1 code loads: the module inlined as
constants, input node ``Placeholder`` (float32 [None, height, width, 3], RGB in [0, 1],
already resized) and a softmax output named by --final_tensor_name. The module is
frozen once per run; each graph written after that only swaps in the new layer's
weights, so intermediate graphs cost a file write, not a module reload.
"""

import copy
import os

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from retrain import atomic
from retrain.hub_module import FeatureExtractor

INPUT_NODE = "Placeholder"
BOTTLENECK_INPUT_NODE = "input/BottleneckInputPlaceholder"
WEIGHTS_NODE = "final_retrain_ops/weights/final_weights"
BIASES_NODE = "final_retrain_ops/biases/final_biases"


class GraphExporter:
    """Writes frozen GraphDefs of module + final layer for given layer weights."""

    def __init__(self, extractor: FeatureExtractor, class_count: int, final_tensor_name: str):
        self.extractor = extractor
        self.final_tensor_name = final_tensor_name
        self._template = self._freeze(class_count)

    def _freeze(self, class_count: int) -> tf.compat.v1.GraphDef:
        extractor = self.extractor
        dim = extractor.feature_dim
        input_spec = tf.TensorSpec([None, extractor.height, extractor.width, 3], tf.float32, name=INPUT_NODE)

        @tf.function(input_signature=[input_spec])
        def classify(images):
            features = extractor.extract(images)
            # Feedable with precomputed bottlenecks, as in retrain.py's graphs.
            bottlenecks = tf.compat.v1.placeholder_with_default(features, [None, dim], name=BOTTLENECK_INPUT_NODE)
            with tf.name_scope("final_retrain_ops"):
                with tf.name_scope("weights"):
                    weights = tf.constant(np.zeros([dim, class_count], np.float32), name="final_weights")
                with tf.name_scope("biases"):
                    biases = tf.constant(np.zeros([class_count], np.float32), name="final_biases")
                with tf.name_scope("Wx_plus_b"):
                    logits = tf.add(tf.matmul(bottlenecks, weights), biases, name="add")
            return tf.nn.softmax(logits, name=self.final_tensor_name)

        frozen = convert_to_constants.convert_variables_to_constants_v2(classify.get_concrete_function())
        graph_def = frozen.graph.as_graph_def()
        names = {node.name for node in graph_def.node}
        for required in (INPUT_NODE, WEIGHTS_NODE, BIASES_NODE, self.final_tensor_name):
            if required not in names:
                raise RuntimeError(f"node {required} missing from the frozen graph")
        return graph_def

    @property
    def structure(self) -> tf.compat.v1.GraphDef:
        """The frozen graph with zero layer weights, for showing its structure (not a copy)."""
        return self._template

    def graph_def(self, weights: np.ndarray, biases: np.ndarray) -> tf.compat.v1.GraphDef:
        """The frozen graph with the given float32 weights [dim, classes] and biases [classes]."""
        graph_def = copy.deepcopy(self._template)
        values = {WEIGHTS_NODE: weights, BIASES_NODE: biases}
        for node in graph_def.node:
            if node.name in values:
                tensor = tf.make_tensor_proto(np.asarray(values[node.name], np.float32))
                node.attr["value"].tensor.CopyFrom(tensor)
        return graph_def

    def write(self, path: str, weights: np.ndarray, biases: np.ndarray) -> None:
        """Writes the frozen graph to path atomically, creating parent folders."""
        atomic.write_bytes(path, self.graph_def(weights, biases).SerializeToString())


def write_labels(path: str, labels: list[str]) -> None:
    """One label per line in class order, newline-terminated, written atomically."""
    atomic.write_text(path, "\n".join(labels) + "\n")


def write_checkpoint(path: str, weights: np.ndarray, biases: np.ndarray) -> None:
    """Saves the final layer's variables as a TF checkpoint with prefix path."""
    layer = tf.train.Checkpoint(
        final_weights=tf.Variable(weights, name="final_weights"),
        final_biases=tf.Variable(biases, name="final_biases"),
    )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    layer.write(path)


class _Classifier(tf.Module):
    """Module + final layer, for tf.saved_model.save."""

    def __init__(self, extractor: FeatureExtractor, weights: np.ndarray, biases: np.ndarray):
        super().__init__()
        self.feature_module = extractor.module
        self.final_weights = tf.Variable(weights, name="final_weights")
        self.final_biases = tf.Variable(biases, name="final_biases")
        self._extract = extractor.extract
        spec = tf.TensorSpec([None, extractor.height, extractor.width, 3], tf.float32, name="image")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, image):
        logits = tf.matmul(self._extract(image), self.final_weights) + self.final_biases
        return {"prediction": tf.nn.softmax(logits)}


def write_saved_model(path: str, extractor: FeatureExtractor, weights: np.ndarray, biases: np.ndarray) -> None:
    """Exports a SavedModel whose serving_default maps 'image' to 'prediction'.

    'image' is float32 [batch, height, width, 3] RGB in [0, 1], 'prediction' the
    softmax scores [batch, classes]. An existing folder at path is replaced only
    once the new one is complete.
    """
    classifier = _Classifier(extractor, weights, biases)
    with atomic.replaced_directory(path) as temp_dir:
        tf.saved_model.save(classifier, temp_dir, signatures={"serving_default": classifier.serve})
