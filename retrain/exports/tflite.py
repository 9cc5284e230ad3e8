"""The TFLite model, for Android, iOS and microcontrollers, checked against the frozen graph.

Module + final layer, converted with tf.lite.TFLiteConverter. Signature
``serving_default``: input ``image`` float32 [batch, height, width, 3] RGB in [0, 1],
already resized (as the frozen graph's Placeholder; batch 1 unless resized); output
``scores``, the softmax [batch, classes] in label order, and when calibrated
``calibrated_scores``. Metadata entry "retrain" (JSON) holds the labels, the
temperature and "unknown" threshold, and the decoding, so nothing travels beside it.

Quantization (--tflite_quantization):
- ``float``: float32 weights, the frozen graph's answers within rounding.
- ``float16``: weights stored as float16, half the size, nearly the same answers.
- ``int8``: full-integer quantization, a quarter of the size and fast on phones'
  integer units. Its ranges come from representative module inputs of training
  images (chosen with the run's seed, decoded as the cache decodes them). Input and
  output stay float32 unless --tflite_io_type asks for uint8 or int8 (then the input
  takes q = x / scale + zero_point, e.g. raw 0-255 pixels for uint8).

Right after writing, the model is run on the held-out (test, else validation) images
and compared with the frozen graph's answers on the same images.
"""

import time

import numpy as np
import tensorflow as tf
from absl import logging

from retrain import config
from retrain.data import module_inputs, storage
from retrain.errors import UserError
from retrain.exports import parity
from retrain.runtime import quiet, tflite_runtime
from retrain.runtime.quiet import muted_stderr

QUANTIZATIONS = config.TFLITE_QUANTIZATIONS
IO_TYPES = config.TFLITE_IO_TYPES

# Below this top-1 agreement with the frozen graph, the export warns.
MIN_AGREEMENT = 0.97


# The check after writing (exports.parity), under the name earlier versions gave it.
TFLiteParity = parity.Parity


def _classify_function(model):
    extractor = model.module
    weights = tf.constant(model.weights)
    biases = tf.constant(model.biases)
    calibration = model.calibration
    spec = tf.TensorSpec([None, extractor.height, extractor.width, 3], tf.float32, name="image")

    @tf.function(input_signature=[spec], autograph=False)
    def classify(image):
        logits = tf.matmul(extractor.extract(image), weights) + biases
        outputs = {"scores": tf.nn.softmax(logits)}
        if calibration is not None:
            # A product, not a division: int8 kernels have MUL for every type.
            outputs["calibrated_scores"] = tf.nn.softmax(logits * np.float32(1.0 / calibration.temperature))
        return outputs

    return classify.get_concrete_function()


def representative_inputs(model, count: int):
    """A representative_dataset for int8: up to count module inputs of model.representative_paths."""
    paths = list(model.representative_paths[:count])
    if not paths:
        raise UserError("int8 quantization needs training images to calibrate on; none could be read.")

    def generate():
        decode = module_inputs.module_input_decoder(model.preprocessing, batch_size=16)
        for _, batch, _ in decode(paths):
            if batch is not None:
                for image in np.asarray(batch):
                    yield [image[np.newaxis]]

    return generate


def convert(model, *, quantization: str = "float", io_type: str = "float32", representative_images: int = 300) -> bytes:
    """The .tflite bytes of a TrainedModel (see the module docstring).

    Raises:
      UserError: the conversion failed (the message says why and what to try).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_classify_function(model)], model.module.module)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_inputs(model, representative_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_type != "float32":
            converter.inference_input_type = getattr(tf, io_type)
            converter.inference_output_type = getattr(tf, io_type)
    try:
        with muted_stderr(), quiet.tensorflow_warnings_muted():
            content = converter.convert()
    except Exception as e:  # The converter raises its own error types, with long messages.
        first_line = (str(e).strip() or type(e).__name__).splitlines()[0]
        hint = " Try --tflite_quantization float16 or float." if quantization == "int8" else ""
        raise UserError(f"TFLite conversion ({quantization}) failed: {first_line}.{hint}") from e
    calibration = model.calibration
    return tflite_runtime.with_metadata(
        content,
        {
            "labels": list(model.labels),
            "temperature": calibration.temperature if calibration else None,
            "unknown_threshold": calibration.unknown_threshold if calibration else None,
            "fast_jpeg_decode": model.preprocessing.fast_jpeg_decode,
            "training_split": model.training_split,
            "quantization": quantization,
        },
    )


def measure_parity(content: bytes, model, *, quantization: str, batch_size: int = 32) -> TFLiteParity | None:
    """Runs the .tflite content on model.held_out's images, decoded as for the cache, and
    compares it with the model (exports.parity). None when there are no held-out images."""
    runner = tflite_runtime.TFLiteModel(content)
    decode = module_inputs.module_input_decoder(model.preprocessing, batch_size)

    def batches(paths):
        for positions, batch, _ in decode(paths):
            if batch is not None:
                yield positions, runner.run(np.asarray(batch))["scores"]

    return parity.measure(model, batches, "Checking the TFLite model", quantization=quantization,
                          size_bytes=len(content))


def write(path: str, model, options) -> TFLiteParity | None:
    """Converts a TrainedModel as options (an OutputConfig) ask, writes it atomically, checks it.

    A failed conversion raises before anything is written: an earlier file at path stays.
    """
    start = time.perf_counter()
    content = convert(
        model,
        quantization=options.tflite_quantization,
        io_type=options.tflite_io_type,
        representative_images=options.tflite_representative_images,
    )
    seconds = time.perf_counter() - start
    storage.write_bytes(path, content)
    size = f"{len(content) / 1e6:.1f} MB" if len(content) >= 100_000 else f"{len(content) / 1e3:.0f} kB"
    logging.info("TFLite model (%s, %s) written to %s in %.1f s.", options.tflite_quantization, size, path, seconds)
    advice = ("try --tflite_quantization float16, or more representative images (--tflite_representative_images)"
              if options.tflite_quantization == "int8" else "try --tflite_quantization float")
    return parity.finish(measure_parity(content, model, quantization=options.tflite_quantization), seconds,
                         name=f"TFLite ({options.tflite_quantization})", kind="TFLite",
                         output_graph=options.output_graph, min_agreement=MIN_AGREEMENT, advice=advice)
