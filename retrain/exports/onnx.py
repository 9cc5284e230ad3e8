"""The ONNX model (--output_onnx): for ONNX Runtime on servers, Windows and many languages.

The same classifier as the frozen graph (module + final layer, the module tuned when it
was): input ``image`` float32 [batch, height, width, 3] RGB in [0, 1], already resized as
retrain resizes (TF1 bilinear, no half-pixel centres, aspect not kept); output
``scores``, the softmax in label order (probabilities, not logits), and when calibrated
``calibrated_scores``. The model's metadata (``metadata_props``, key ``retrain``, JSON)
carries the labels, the temperature and "unknown" threshold, the decoding and the
training split, so nothing travels beside it.

Converted by tf2onnx (pinned exactly in the ``onnx`` extra) from a SavedModel of the
classifier, as its command line does (its Keras path is broken on Keras 3), at opset 17;
then checked with ONNX Runtime against the trained model on held-out images.
"""

import json
import logging as python_logging
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import logging

from retrain.data import module_inputs, storage
from retrain.errors import UserError, first_line, require_modules
from retrain.exports import parity
from retrain.runtime import quiet
from retrain.runtime.quiet import muted_stderr

INSTALL_HINT = 'ONNX export needs tf2onnx and ONNX Runtime: pip install "retrain[onnx]"'
OPSET = 17
METADATA_KEY = "retrain"
# Below this top-1 agreement with the frozen graph, the export warns.
MIN_AGREEMENT = 0.99


def check_available() -> None:
    """Raises UserError (with the pip line) unless tf2onnx and ONNX Runtime are installed."""
    require_modules(INSTALL_HINT, "onnxruntime", "tf2onnx")


def metadata(model) -> dict:
    """What travels inside the ONNX model (and the web page's config)."""
    calibration = model.calibration
    return {
        "labels": list(model.labels),
        "temperature": calibration.temperature if calibration else None,
        "unknown_threshold": calibration.unknown_threshold if calibration else None,
        "fast_jpeg_decode": model.preprocessing.fast_jpeg_decode,
        "training_split": model.training_split,
        "height": model.module.height,
        "width": model.module.width,
    }


class _Classifier(tf.Module):
    """Module + final layer as a SavedModel signature for tf2onnx: images -> probabilities."""

    def __init__(self, model, resize_inside: bool):
        super().__init__()
        module = model.module
        self.feature_module = module.module
        self._extract = module.extract
        self.final_weights = tf.Variable(model.weights, name="final_weights")
        self.final_biases = tf.Variable(model.biases, name="final_biases")
        self._temperature = model.calibration.temperature if model.calibration else None
        self._size = (module.height, module.width)
        if resize_inside:
            # Decoded pixels at their own size, uint8 [1, h, w, 3]: scaled and resized inside, as training did.
            spec = tf.TensorSpec([1, None, None, 3], tf.uint8, name="pixels")
            self.serve = tf.function(self._serve_pixels, input_signature=[spec], autograph=False)
        else:
            spec = tf.TensorSpec([None, module.height, module.width, 3], tf.float32, name="image")
            self.serve = tf.function(self._serve_image, input_signature=[spec], autograph=False)

    def _outputs(self, images):
        logits = tf.matmul(self._extract(images), self.final_weights) + self.final_biases
        outputs = {"scores": tf.nn.softmax(logits)}
        if self._temperature is not None:
            outputs["calibrated_scores"] = tf.nn.softmax(logits * np.float32(1.0 / self._temperature))
        return outputs

    def _serve_image(self, image):
        return self._outputs(image)

    def _serve_pixels(self, pixels):
        scaled = tf.image.convert_image_dtype(pixels, tf.float32)
        height, width = self._size
        resized = tf.raw_ops.ResizeBilinear(images=scaled, size=[height, width], align_corners=False,
                                            half_pixel_centers=False)
        return self._outputs(resized)


def convert(model, *, resize_inside: bool = False) -> bytes:
    """The ONNX model's bytes for a TrainedModel (see the module docstring); with resize_inside,
    the web page's: input ``pixels`` uint8 [1, h, w, 3] at the image's own size.

    Raises:
      UserError: tf2onnx is missing, or the conversion failed.
    """
    check_available()
    import onnx
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    classifier = _Classifier(model, resize_inside)
    with tempfile.TemporaryDirectory(prefix="retrain-onnx-") as folder:
        saved = os.path.join(folder, "classifier")
        with quiet.tensorflow_warnings_muted():
            tf.saved_model.save(classifier, saved, signatures={"serving_default": classifier.serve})
        try:
            with _tf2onnx_quiet():
                graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
                    saved, None, None, "serve", ["serving_default"], None, False,
                    return_initialized_tables=True, return_tensors_to_rename=True)
                proto, _ = tf2onnx_convert._convert_common(
                    graph_def, name="retrain", opset=OPSET, input_names=inputs, output_names=outputs,
                    initialized_tables=tables, tensors_to_rename=renames)
        except Exception as e:  # The converter raises many types, with long messages.
            raise UserError(f"ONNX conversion failed: {first_line(e)}") from e
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata(model), sort_keys=True)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


class _tf2onnx_quiet:
    """tf2onnx logs every step at INFO and prints through TensorFlow's C++ logging: quiet unless DEBUG."""

    def __enter__(self):
        self._logger = python_logging.getLogger("tf2onnx")
        self._level = self._logger.level
        if not logging.level_debug():
            self._logger.setLevel(python_logging.ERROR)
        self._muted = muted_stderr()
        self._muted.__enter__()
        return self

    def __exit__(self, *exc_info):
        self._muted.__exit__(*exc_info)
        self._logger.setLevel(self._level)


def session(content: bytes):
    """An ONNX Runtime session on the model's bytes, on the CPU, one thread per core."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # Errors only.
    return onnxruntime.InferenceSession(content, sess_options=options, providers=["CPUExecutionProvider"])


def measure_parity(content: bytes, model, batch_size: int = 32) -> parity.Parity | None:
    """The ONNX model on model.held_out's images, decoded as for the cache, against the model."""
    runner = session(content)
    name = runner.get_inputs()[0].name
    decode = module_inputs.module_input_decoder(model.preprocessing, batch_size)

    def batches(paths):
        for positions, batch, _ in decode(paths):
            if batch is not None:
                yield positions, runner.run(["scores"], {name: np.asarray(batch, np.float32)})[0]

    return parity.measure(model, batches, "Checking the ONNX model", size_bytes=len(content))


def write(path: str, model, options) -> parity.Parity | None:
    """Converts a TrainedModel, writes it atomically and checks it with ONNX Runtime."""
    start = time.perf_counter()
    content = convert(model)
    seconds = time.perf_counter() - start
    storage.write_bytes(path, content)
    logging.info("ONNX model (opset %d, %.1f MB) written to %s in %.1f s.", OPSET, len(content) / 1e6, path, seconds)
    return parity.finish(measure_parity(content, model), seconds, name="ONNX", kind="ONNX",
                         output_graph=options.output_graph, min_agreement=MIN_AGREEMENT,
                         advice="please report it, with the module used")
