"""The SavedModel: for TF Serving, Vertex AI, TensorFlow.js and Python.

Two signatures:

- ``serving_default``, as retrain.py wrote it: input ``image`` float32 [batch, height,
  width, 3] RGB in [0, 1], already resized; output ``prediction``, the softmax scores
  [batch, classes] in label order. Unchanged, so existing clients keep working.
- ``serving_bytes``: input ``images``, a batch of encoded image files (tf.string:
  JPEG, PNG, GIF or BMP), decoded and resized inside the graph by the same
  preprocessing training used; outputs ``scores`` [batch, classes], ``top_labels``
  (string [batch, k]) and ``top_scores`` [batch, k] with k = min(5, classes), and
  when the model is calibrated ``calibrated_scores`` [batch, classes] and ``unknown``
  (bool [batch]: calibrated top score below the model's threshold). The labels
  travel inside the SavedModel, in the signature and as an asset (assets/labels.txt).

A graph cannot read EXIF, so serving_bytes does not turn phone photos upright; clients
that send such photos should rotate them first.
"""

import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from retrain.data import storage
from retrain.runtime import quiet

SERVING_DEFAULT = "serving_default"
SERVING_BYTES = "serving_bytes"
TOP_K = 5


class _Classifier(tf.Module):
    """Module + final layer (+ calibration), with both serving signatures."""

    def __init__(self, model, labels_file: str):
        super().__init__()
        extractor = model.module
        self.feature_module = extractor.module
        self._extract = extractor.extract
        self._preprocessing = model.preprocessing
        self.final_weights = tf.Variable(model.weights, name="final_weights")
        self.final_biases = tf.Variable(model.biases, name="final_biases")
        calibration = model.calibration
        self._calibrated = calibration is not None
        if calibration is not None:
            self.temperature = tf.Variable(np.float32(calibration.temperature), name="temperature")
            threshold = calibration.unknown_threshold
            # No threshold: nothing is "unknown" (every top score is >= 0).
            self.unknown_threshold = tf.Variable(np.float32(0.0 if threshold is None else threshold), name="unknown_threshold")
        self.fast_jpeg_decode = tf.Variable(model.preprocessing.fast_jpeg_decode, name="fast_jpeg_decode")
        # Which images it was trained on (JSON), for label-image --evaluate.
        self.training_split = tf.Variable(json.dumps(model.training_split, sort_keys=True), name="training_split")
        # The labels file rides along as an asset, for people and tools that read it; the
        # signature takes the labels from a constant: a table filled from a file would be
        # a file operation, which the safety scan (module.scan) refuses in models.
        self.labels_file = tf.saved_model.Asset(labels_file)
        self._labels = tf.constant(list(model.labels), tf.string)
        self._top_k = min(TOP_K, len(model.labels))
        image_spec = tf.TensorSpec([None, extractor.height, extractor.width, 3], tf.float32, name="image")
        # Plain TensorFlow ops: AutoGraph would only lengthen the export.
        self.serve = tf.function(self._serve, input_signature=[image_spec], autograph=False)
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name="images")], autograph=False
        )

    def _logits(self, images):
        return tf.matmul(self._extract(images), self.final_weights) + self.final_biases

    def _serve(self, image):
        return {"prediction": tf.nn.softmax(self._logits(image))}

    def _serve_bytes(self, images):
        logits = self._logits(self._preprocessing.decode_batch(images))
        scores = tf.nn.softmax(logits)
        top_scores, top_indices = tf.math.top_k(scores, self._top_k)
        result = {
            "scores": scores,
            "top_scores": top_scores,
            "top_labels": tf.gather(self._labels, top_indices),
        }
        if self._calibrated:
            calibrated = tf.nn.softmax(logits / self.temperature)
            result["calibrated_scores"] = calibrated
            result["unknown"] = tf.reduce_max(calibrated, axis=1) < self.unknown_threshold
        return result


def write(path: str, model, options=None) -> None:
    """Exports a TrainedModel as a SavedModel folder at path (see the module docstring).

    An existing folder at path is replaced only once the new one is complete.
    """
    del options  # Nothing to choose.
    with tempfile.TemporaryDirectory(prefix="retrain-labels-") as labels_dir:
        labels_file = os.path.join(labels_dir, "labels.txt")
        with open(labels_file, "w", encoding="utf-8") as f:
            f.write("\n".join(model.labels) + "\n")
        classifier = _Classifier(model, labels_file)
        with storage.replaced_directory(path) as temp_dir, quiet.tensorflow_warnings_muted():
            tf.saved_model.save(
                classifier,
                temp_dir,
                signatures={SERVING_DEFAULT: classifier.serve, SERVING_BYTES: classifier.serve_bytes},
            )

