"""Load an exported classifier, whatever its format, and score batches of images with it.

- A frozen GraphDef (.pb: from retrain, from the original retrain.py, or older graphs
  fed through ``DecodeJpeg/contents`` or ``Mul``) runs in a plain TF1 session, so
  scores are those of TensorFlow's label_image.py for the same graph and file.
- A SavedModel folder (retrain's --saved_model_dir) runs through its
  ``serving_default`` signature (pixels) or ``serving_bytes`` (encoded files).
- A .tflite file (retrain's --output_tflite, any quantization) runs in the LiteRT
  interpreter (see tflite_runtime).
- An .onnx file (retrain's --output_onnx) runs in ONNX Runtime (the onnx extra).

Formats are told apart by content: a folder is a SavedModel, a file whose FlatBuffer
identifier is ``TFL3`` (or named .tflite) a TFLite model, a file named .onnx an ONNX
model, anything else a GraphDef.
Models written by retrain also say how they were calibrated and decoded; every
classifier exposes that the same way.
"""

import dataclasses
import json
import math
import os
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from retrain.data import batching, images, storage
from retrain.errors import UserError, first_line
from retrain.exports import frozen_graph, saved_model
from retrain.module import scan
from retrain.runtime import graph_weights, tflite_runtime
from retrain.runtime.progress import Progress
from retrain.scoring import Calibration

SIGNATURES = (saved_model.SERVING_DEFAULT, saved_model.SERVING_BYTES)


@dataclasses.dataclass
class Scores:
    """A batch's answers: scores float32 [n, classes]; calibrated float32 [n, classes] or None."""

    scores: np.ndarray
    calibrated: np.ndarray | None = None


class Classifier:
    """A loaded model: a batch of images -> Scores.

    Attributes:
      height, width: the input size images are resized to.
      class_count: the number of scores per image, when the model says.
      takes_encoded_images: the input is file bytes rather than pixels.
      takes_one_image_per_run: the input has no batch axis, or a fixed batch of 1.
      calibration: the temperature and "unknown" threshold the model carries, or None.
      fast_jpeg_decode: the model was trained on JPEGs decoded at reduced scale.
      labels: the labels the model carries in class order (SavedModel, TFLite), or None.
      training_split: which images it was trained on (data.image_lists.ImageLists.record),
        or {} when it does not say.
    """

    height: int
    width: int
    class_count: int | None
    takes_encoded_images: bool = False
    takes_one_image_per_run: bool = False
    calibration: Calibration | None = None
    fast_jpeg_decode: bool = False
    labels: list[str] | None = None
    training_split: dict = {}

    def predict(self, batch) -> Scores:
        """batch: float32 [n, height, width, 3] preprocessed pixels, or n file contents."""
        raise NotImplementedError

    def take_metadata(self, metadata, path: str) -> None:
        """What a model retrain wrote carries in its metadata (TFLite, ONNX): labels,
        calibration, decoding, training split; a model without it keeps the defaults.

        Raises:
          UserError: the metadata is there but not what retrain writes (a damaged or
            crafted model): better one line now than odd scores later.
        """
        if isinstance(metadata, (str, bytes)):
            try:
                metadata = json.loads(metadata or "{}")
            except ValueError:
                metadata = None
        if not isinstance(metadata, dict):
            raise UserError(f"{path}: its retrain metadata is not a JSON object; the model is damaged.")
        labels = metadata.get("labels")
        temperature = metadata.get("temperature")
        threshold = metadata.get("unknown_threshold")
        wrong = [name for name, ok in (
            ("labels", labels is None or (isinstance(labels, list) and all(isinstance(x, str) for x in labels))),
            ("temperature", temperature is None or (_is_number(temperature) and 0 < temperature < 1e6)),
            ("unknown_threshold", threshold is None or (_is_number(threshold) and 0 <= threshold <= 1)),
            ("fast_jpeg_decode", isinstance(metadata.get("fast_jpeg_decode", False), bool)),
            ("training_split", isinstance(metadata.get("training_split") or {}, dict)),
        ) if not ok]
        if wrong:
            raise UserError(f"{path}: its retrain metadata has an invalid {', '.join(wrong)}; the model is damaged.")
        if temperature is not None:
            self.calibration = Calibration(float(temperature), None if threshold is None else float(threshold))
        self.fast_jpeg_decode = metadata.get("fast_jpeg_decode", False)
        self.training_split = metadata.get("training_split") or {}
        self.labels = labels
        if self.labels:
            self.class_count = len(self.labels)

    def scores(self, batch) -> np.ndarray:
        return self.predict(batch).scores

    def close(self) -> None:
        """Frees what the runtime holds (a session); the classifier is not used after."""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


class FrozenGraphClassifier(Classifier):
    """A frozen GraphDef run in a TF1 session, exactly as label_image.py ran it."""

    def __init__(self, path: str, contents: bytes, input_layer: str, output_layer: str, height=None, width=None,
                 allow_unsafe_ops: bool = False):
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(contents)
        except Exception as e:  # protobuf's DecodeError and friends.
            raise UserError(f"{path} is not a TensorFlow GraphDef (.pb) file: {e}") from e
        scan.check_graph_def(graph_def, path, allow_unsafe_ops=allow_unsafe_ops)
        self._graph = tf.Graph()
        with self._graph.as_default():
            try:
                graph_def, weights = graph_weights.split_weights(graph_def)
                tf.compat.v1.import_graph_def(graph_def, name="")
            except (ValueError, tf.errors.OpError) as e:
                raise UserError(f"Cannot import graph {path}: {str(e).splitlines()[0]}") from e
        del graph_def
        self._input = self._get_tensor(path, input_layer, "input")
        self._output = self._get_tensor(path, output_layer, "output")
        self._calibrated = self._optional_tensor(frozen_graph.calibrated_output_name(output_layer.split(":")[0]))
        self.calibration = self._read_calibration()
        fast = self._constant(frozen_graph.FAST_JPEG_DECODE_NODE)
        self.fast_jpeg_decode = bool(fast) if fast is not None else False
        self.training_split = _split_from_json(self._constant(frozen_graph.TRAINING_SPLIT_NODE))
        self.takes_encoded_images = self._input.dtype == tf.string
        shape = self._input.shape
        fixed_h = shape[1] if shape.rank == 4 else None
        fixed_w = shape[2] if shape.rank == 4 else None
        self.height = int(height or fixed_h or 299)
        self.width = int(width or fixed_w or 299)
        self.takes_one_image_per_run = self.takes_encoded_images or not (shape.rank == 4 and shape[0] is None)
        self.class_count = self._output.shape[-1] if self._output.shape.rank else None
        self._session = tf.compat.v1.Session(graph=self._graph, config=_session_config())
        graph_weights.assign_weights(self._session, weights)

    def close(self) -> None:
        self._session.close()

    def _get_tensor(self, path, name, role):
        try:
            return self._graph.get_tensor_by_name(_tensor_name(name))
        except (KeyError, ValueError) as e:
            placeholders = [op.name for op in self._graph.get_operations() if op.type == "Placeholder"]
            raise UserError(
                f"Graph {path} has no {role} layer '{name}'. Its placeholders are: "
                f"{', '.join(placeholders) or 'none'}."
            ) from e

    def _optional_tensor(self, name):
        try:
            return self._graph.get_tensor_by_name(_tensor_name(name))
        except (KeyError, ValueError):
            return None

    def _constant(self, name):
        try:
            op = self._graph.get_operation_by_name(name)
        except (KeyError, ValueError):
            return None
        return tf.make_ndarray(op.get_attr("value")) if op.type == "Const" else None

    def _read_calibration(self) -> Calibration | None:
        temperature = self._constant(frozen_graph.TEMPERATURE_NODE)
        if temperature is None or self._calibrated is None:
            return None
        threshold = self._constant(frozen_graph.UNKNOWN_THRESHOLD_NODE)
        return Calibration(float(temperature), None if threshold is None else float(threshold))

    def predict(self, batch) -> Scores:
        if self.takes_one_image_per_run:
            parts = [self._run(item if self.takes_encoded_images else item[np.newaxis]) for item in batch]
            return Scores(*(np.concatenate(p) if p[0] is not None else None for p in zip(*parts)))
        return Scores(*self._run(batch))

    def _run(self, feed):
        fetches = [self._output] + ([self._calibrated] if self._calibrated is not None else [])
        outputs = self._session.run(fetches, {self._input: feed})
        rows = [np.reshape(out, (-1, out.shape[-1])) for out in outputs]
        return rows[0], (rows[1] if len(rows) > 1 else None)


def _session_config() -> tf.compat.v1.ConfigProto:
    """A session that runs a frozen graph as it is.

    Grappler's passes (constant folding above all) rewrite a graph of 90 MB of
    constants before its first run: 3-4 s and a gigabyte of copies for one image,
    and no faster inference afterwards (measured on Inception v3, batch 1 and 32).
    """
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    config.graph_options.optimizer_options.opt_level = tf.compat.v1.OptimizerOptions.L0
    config.graph_options.optimizer_options.do_constant_folding = False
    return config


class SavedModelClassifier(Classifier):
    """A SavedModel folder run through serving_default (pixels) or serving_bytes (file bytes)."""

    def __init__(self, path: str, signature_name: str = saved_model.SERVING_DEFAULT, height=None, width=None,
                 allow_unsafe_ops: bool = False):
        scan.check_saved_model(path, allow_unsafe_ops=allow_unsafe_ops)  # Loading alone runs its initializers.
        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:  # Loading raises many types for broken folders.
            raise UserError(f"Cannot load SavedModel {path}: {str(e).splitlines()[0]}") from e
        signature = loaded.signatures.get(signature_name)
        if signature is None:
            raise UserError(
                f"SavedModel {path} has no {signature_name} signature; it has: {', '.join(loaded.signatures) or 'none'}."
            )
        _, inputs = signature.structured_input_signature
        if len(inputs) != 1:
            raise UserError(f"SavedModel {path} must take exactly one input, not {sorted(inputs)}.")
        (self._input_name, spec), = inputs.items()
        outputs = signature.structured_outputs
        self._output_name = next((n for n in ("prediction", "scores") if n in outputs), next(iter(outputs)))
        self._calibrated_name = "calibrated_scores" if "calibrated_scores" in outputs else None
        self._signature = signature
        self._loaded = loaded
        self.takes_encoded_images = spec.dtype == tf.string
        if self.takes_encoded_images:
            height = height or 0
            width = width or 0
        else:
            height = height or spec.shape[1] or 299
            width = width or spec.shape[2] or 299
        self.height, self.width = int(height), int(width)
        self.class_count = outputs[self._output_name].shape[-1]
        if hasattr(loaded, "temperature"):
            threshold = float(loaded.unknown_threshold.numpy()) if hasattr(loaded, "unknown_threshold") else None
            self.calibration = Calibration(float(loaded.temperature.numpy()), threshold or None)
        if hasattr(loaded, "fast_jpeg_decode"):
            self.fast_jpeg_decode = bool(loaded.fast_jpeg_decode.numpy())
        if hasattr(loaded, "training_split"):
            self.training_split = _split_from_json(loaded.training_split.numpy())
        labels_file = storage.join(path, "assets", "labels.txt")  # Written by retrain's --saved_model_dir.
        if storage.exists(labels_file):
            self.labels = read_labels(labels_file)

    def predict(self, batch) -> Scores:
        if self.takes_encoded_images:
            feed = tf.constant(list(batch), tf.string)
        else:
            feed = tf.constant(batch, tf.float32)
        result = self._signature(**{self._input_name: feed})
        calibrated = result[self._calibrated_name].numpy() if self._calibrated_name else None
        return Scores(result[self._output_name].numpy(), calibrated)


class TFLiteClassifier(Classifier):
    """A .tflite model in the LiteRT interpreter (float32, float16 or int8 inside)."""

    def __init__(self, path: str, contents: bytes, allow_unsafe_ops: bool = False):
        scan.check_tflite(contents, path, allow_unsafe_ops=allow_unsafe_ops)
        try:
            self._model = tflite_runtime.TFLiteModel(contents)
        except ValueError as e:
            raise UserError(f"TFLite model {path} cannot be used: {e}") from e
        names = self._model.output_names
        self._output_name = "scores" if "scores" in names else names[0]
        self._calibrated_name = "calibrated_scores" if "calibrated_scores" in names else None
        self.height, self.width = self._model.height, self._model.width
        self.class_count = None
        self.take_metadata(self._model.metadata, path)

    def predict(self, batch) -> Scores:
        outputs = self._model.run(np.asarray(batch, np.float32))
        calibrated = outputs[self._calibrated_name] if self._calibrated_name else None
        return Scores(outputs[self._output_name], calibrated)


class ONNXClassifier(Classifier):
    """An .onnx model (retrain's --output_onnx, or another image classifier) in ONNX Runtime."""

    def __init__(self, path: str, contents: bytes, allow_unsafe_ops: bool = False):
        from retrain.exports import onnx

        onnx.check_available()
        scan.check_onnx(contents, path, allow_unsafe_ops=allow_unsafe_ops)
        try:
            self._session = onnx.session(contents)
        except UserError:
            raise
        except Exception as e:  # ONNX Runtime's own errors for files it cannot use.
            raise UserError(f"ONNX model {path} cannot be used: {first_line(e)}") from e
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise UserError(f"ONNX model {path} must take one input of [batch, height, width, 3] images.")
        self._input = inputs[0].name
        names = [output.name for output in self._session.get_outputs()]
        self._output_name = "scores" if "scores" in names else names[0]
        self._calibrated_name = "calibrated_scores" if "calibrated_scores" in names else None
        _, height, width, _ = inputs[0].shape
        self.height = height if isinstance(height, int) else 299
        self.width = width if isinstance(width, int) else 299
        self.class_count = None
        self.take_metadata(self._session.get_modelmeta().custom_metadata_map.get(onnx.METADATA_KEY, "{}"), path)

    def predict(self, batch) -> Scores:
        names = [self._output_name] + ([self._calibrated_name] if self._calibrated_name else [])
        outputs = self._session.run(names, {self._input: np.asarray(batch, np.float32)})
        return Scores(outputs[0], outputs[1] if len(outputs) > 1 else None)


def _split_from_json(value) -> dict:
    """A recorded training split from its JSON (bytes or str), or {} when absent or unreadable."""
    if value is None:
        return {}
    if isinstance(value, np.ndarray):
        value = value.item()
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        split = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return {}
    return split if isinstance(split, dict) else {}


def _is_tflite(path: str, head: bytes) -> bool:
    return head[4:8] == b"TFL3" or path.lower().endswith(".tflite")


def load_classifier(
    path: str,
    *,
    input_layer: str = "Placeholder",
    output_layer: str = "final_result",
    signature: str = saved_model.SERVING_DEFAULT,
    height=None,
    width=None,
    allow_unsafe_ops: bool = False,
) -> Classifier:
    """Loads a frozen graph, a SavedModel folder or a .tflite file (see the module docstring),
    once every operation it holds is found safe (module.scan), unless allow_unsafe_ops.

    Raises:
      UserError: path is missing or is no model of these kinds.
      module.scan.UnsafeModelError: it holds operations that reach outside the model.
    """
    try:
        if storage.isdir(path):
            return SavedModelClassifier(path, signature, height, width, allow_unsafe_ops)
        contents = storage.read_bytes(path)
    except FileNotFoundError as e:
        raise UserError(f"Graph file {path} not found.") from e
    except OSError as e:
        raise UserError(f"Cannot read graph {path}: {e.strerror or e}") from e
    if path.lower().endswith(".onnx"):
        return ONNXClassifier(path, contents, allow_unsafe_ops)
    if _is_tflite(path, contents[:8]):
        classifier = TFLiteClassifier(path, contents, allow_unsafe_ops)
        if height and height != classifier.height or width and width != classifier.width:
            raise UserError(f"TFLite model {path} takes {classifier.height}x{classifier.width} images.")
        return classifier
    return FrozenGraphClassifier(path, contents, input_layer, output_layer, height, width, allow_unsafe_ops)


def read_labels(path: str) -> list[str]:
    """The labels file: one label per line, as retrain writes it."""
    try:
        text = storage.read_bytes(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"Cannot read labels file {path}: {getattr(e, 'strerror', None) or e}") from e
    return [line for line in text.split("\n") if line]


def image_loader(classifier: Classifier, mean: float, std: float) -> Callable[[str], object]:
    """path -> what the classifier's input takes, preprocessed as label_image.py did.

    A model trained with --fast_jpeg_decode gets its images decoded the same way.
    """
    if classifier.takes_encoded_images:

        def load_bytes(path):
            images.read_image(path)  # Reject what is not an image, by name.
            return images.read_contents(path)

        return load_bytes
    if classifier.fast_jpeg_decode:
        from retrain.data.preprocessing import Preprocessing

        preprocessing = Preprocessing(classifier.height, classifier.width, fast_jpeg_decode=True)

        def load_as_trained(path):
            pixels = preprocessing.decode_file(path)  # In [0, 1].
            if (mean, std) == (0.0, 255.0):
                return pixels  # label_image.py's defaults: exactly what the module was fed.
            return ((pixels * 255.0 - mean) / std).astype(np.float32)

        return load_as_trained
    return lambda path: images.to_graph_input(images.read_image(path), classifier.height, classifier.width, mean, std)


def classify_files(
    classifier: Classifier,
    paths: list[str],
    *,
    mean: float,
    std: float,
    batch_size: int,
    workers: int | None = None,
    show_progress: bool | None = None,
) -> Iterator[tuple[str, Scores | None, str | None]]:
    """Yields (path, Scores of one image or None, error or None) for each path, in order.

    Images are decoded ahead on threads and scored in batches; an unreadable file
    gives its error instead of scores and the rest go on.
    """
    load = image_loader(classifier, mean, std)
    workers = workers or os.cpu_count() or 1
    stack = not classifier.takes_encoded_images
    with Progress(len(paths), "Classifying", enabled=show_progress) as progress:
        for positions, batch, errors in _decoded(paths, load, batch_size, workers, stack):
            results = {}
            if batch is not None:
                answer = classifier.predict(batch)
                for row, position in enumerate(positions):
                    calibrated = answer.calibrated[row] if answer.calibrated is not None else None
                    results[position] = (Scores(answer.scores[row], calibrated), None)
            for position, error in errors:
                results[position] = (None, error)
            for position in sorted(results):
                scores, error = results[position]
                yield paths[position], scores, error
            progress.update(len(results))


def _decoded(paths, load, batch_size, workers, stack):
    if stack:
        return batching.decoded_batches(paths, load, batch_size, workers)
    # File contents are not stacked: a list of bytes per batch.
    return batching.decoded_batches(paths, load, batch_size, workers, stack=lambda items: list(items))


def find_images(targets: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expands files and folders (walked recursively, hidden entries skipped) to image paths.

    Returns:
      (image paths, [(target, error)] for targets that do not exist or are no
      regular file, a FIFO say). Files named directly are kept whatever their
      extension; inside folders, only image extensions count.
    """
    from retrain.data.image_lists import list_images

    found, missing = [], []
    for target in targets:
        if storage.isdir(target):
            found.extend(storage.join(target, name) for name in list_images(target))
        elif not storage.exists(target):
            missing.append((target, f"{target} not found"))
        elif problem := storage.not_a_file(target):
            missing.append((target, f"{target} {problem}; it is not opened"))
        else:
            found.append(target)
    return found, missing
