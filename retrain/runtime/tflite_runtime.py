"""Running a .tflite model from Python: the maintained LiteRT interpreter, else TensorFlow's.

``pip install "retrain[tflite]"`` installs ai-edge-litert, Google's maintained TFLite
interpreter; without it TensorFlow's own ``tf.lite.Interpreter`` (deprecated, same
kernels) runs the model, with its deprecation warning kept from the user.

Models may take and give float32, or uint8/int8 with a scale and zero point (full
integer quantization): TFLiteModel hides the difference, taking and giving float32.
"""

import json
import os
import warnings

import numpy as np

from retrain.runtime.quiet import muted_stderr

SIGNATURE = "serving_default"
# Name of the metadata entry where retrain keeps what travels with a .tflite model.
METADATA_NAME = "retrain"


def interpreter_class():
    """ai_edge_litert's Interpreter when installed, else tf.lite.Interpreter."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter
    return Interpreter


class TFLiteModel:
    """A loaded .tflite classifier: float32 images [batch, height, width, 3] -> named float32 outputs.

    Attributes:
      height, width: the input size.
      input_name: the signature's input.
      output_names: its outputs (e.g. 'scores', 'calibrated_scores').
      input_dtype: numpy dtype the model takes (float32, uint8 or int8).
      metadata: the JSON dict retrain stored in the model ({} for other models).
    """

    def __init__(self, content: bytes):
        with warnings.catch_warnings(), muted_stderr():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice.
            self._interpreter = interpreter_class()(model_content=content, num_threads=os.cpu_count() or 1)
        signatures = self._interpreter.get_signature_list()
        if SIGNATURE in signatures:
            self._runner = self._interpreter.get_signature_runner(SIGNATURE)
        elif signatures:
            self._runner = self._interpreter.get_signature_runner(next(iter(signatures)))
        else:
            raise ValueError("the model has no signature (convert it with a signature, as retrain does)")
        inputs = self._runner.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"the model takes {len(inputs)} inputs; an image classifier takes one")
        (self.input_name, self._input), = inputs.items()
        shape = self._input["shape"]
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(f"the model's input has shape {list(shape)}, not [batch, height, width, 3]")
        self.height, self.width = int(shape[1]), int(shape[2])
        self.input_dtype = np.dtype(self._input["dtype"])
        self._outputs = self._runner.get_output_details()
        self.output_names = sorted(self._outputs)
        self.metadata = read_metadata(content)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """float32 [batch, height, width, 3] -> {output name: float32 [batch, ...]}."""
        feed = _quantize(np.asarray(images, np.float32), self._input)
        with muted_stderr():  # The first call prints "Created TensorFlow Lite XNNPACK delegate".
            outputs = self._runner(**{self.input_name: feed})
        return {name: _dequantize(value, self._outputs[name]) for name, value in outputs.items()}


def _quantize(values: np.ndarray, details: dict) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    if dtype == np.float32:
        return values
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    if np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float32)
    scale, zero_point = details["quantization"]
    if not scale:
        return values.astype(np.float32)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def read_metadata(content: bytes) -> dict:
    """The JSON dict retrain stored in a .tflite model's metadata, or {}."""
    try:
        model = schema().Model.GetRootAs(bytearray(content), 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() and entry.Name().decode() == METADATA_NAME:
                data = model.Buffers(entry.Buffer()).DataAsNumpy()
                return json.loads(bytes(data).decode("utf-8"))
    except Exception:  # Not ours, or not parseable: no metadata to use.
        return {}
    return {}


def with_metadata(content: bytes, metadata: dict) -> bytes:
    """The .tflite model content with metadata (a JSON dict) stored under METADATA_NAME."""
    import flatbuffers

    classes = schema()
    model = classes.ModelT.InitFromObj(classes.Model.GetRootAs(bytearray(content), 0))
    buffer = classes.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = classes.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def schema():
    """The TFLite flatbuffer schema classes, from LiteRT or TensorFlow, whichever is there."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated
