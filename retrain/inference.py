"""Load an exported classifier and score images with it, as label_image.py did.

A frozen GraphDef (.pb: from retrain, from the original retrain.py, or older graphs fed
through ``DecodeJpeg/contents`` or ``Mul``) runs in a plain TF1 session, so scores are
those of TensorFlow's label_image.py for the same graph and file. A SavedModel folder
(retrain's --saved_model_dir) runs through its serving signature.
"""

import os
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from retrain import batching, images
from retrain.errors import UserError
from retrain.progress import Progress


class Classifier:
    """A loaded model: float32 [batch, height, width, 3] (preprocessed) -> scores.

    Attributes:
      height, width: the input size images are resized to.
      class_count: the number of scores per image, when the model says.
      takes_encoded_images: the input is a string of file bytes (old
        ``DecodeJpeg/contents`` graphs): feed one file's bytes per run.
    """

    height: int
    width: int
    class_count: int | None
    takes_encoded_images: bool = False

    def scores(self, batch) -> np.ndarray:
        raise NotImplementedError


def _tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


class FrozenGraphClassifier(Classifier):
    """A frozen GraphDef run in a TF1 session, exactly as label_image.py ran it."""

    def __init__(self, path: str, input_layer: str, output_layer: str, height=None, width=None):
        graph_def = tf.compat.v1.GraphDef()
        try:
            with open(path, "rb") as f:
                graph_def.ParseFromString(f.read())
        except OSError as e:
            raise UserError(f"Cannot read graph {path}: {e.strerror or e}") from e
        except Exception as e:  # protobuf's DecodeError and friends.
            raise UserError(f"{path} is not a TensorFlow GraphDef (.pb) file: {e}") from e
        self._graph = tf.Graph()
        with self._graph.as_default():
            try:
                tf.compat.v1.import_graph_def(graph_def, name="")
            except (ValueError, tf.errors.OpError) as e:
                raise UserError(f"Cannot import graph {path}: {str(e).splitlines()[0]}") from e
        self._input = self._get_tensor(path, input_layer, "input")
        self._output = self._get_tensor(path, output_layer, "output")
        self.takes_encoded_images = self._input.dtype == tf.string
        shape = self._input.shape
        fixed_h = shape[1] if shape.rank == 4 else None
        fixed_w = shape[2] if shape.rank == 4 else None
        self.height = int(height or fixed_h or 299)
        self.width = int(width or fixed_w or 299)
        self._batched = shape.rank == 4 and shape[0] is None
        self.class_count = self._output.shape[-1] if self._output.shape.rank else None
        self._session = tf.compat.v1.Session(graph=self._graph)

    def _get_tensor(self, path, name, role):
        try:
            return self._graph.get_tensor_by_name(_tensor_name(name))
        except (KeyError, ValueError) as e:
            placeholders = [op.name for op in self._graph.get_operations() if op.type == "Placeholder"]
            raise UserError(
                f"Graph {path} has no {role} layer '{name}'. Its placeholders are: "
                f"{', '.join(placeholders) or 'none'}."
            ) from e

    def scores(self, batch) -> np.ndarray:
        if self.takes_encoded_images or not self._batched:
            # The input takes one image per run.
            return np.concatenate([self._run(item if self.takes_encoded_images else item[np.newaxis]) for item in batch])
        return self._run(batch)

    def _run(self, feed) -> np.ndarray:
        out = self._session.run(self._output, {self._input: feed})
        return np.reshape(out, (-1, out.shape[-1]))


class SavedModelClassifier(Classifier):
    """A SavedModel folder run through its serving_default signature."""

    def __init__(self, path: str, height=None, width=None):
        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:  # Loading raises many types for broken folders.
            raise UserError(f"Cannot load SavedModel {path}: {str(e).splitlines()[0]}") from e
        signature = loaded.signatures.get("serving_default")
        if signature is None:
            raise UserError(f"SavedModel {path} has no serving_default signature.")
        _, inputs = signature.structured_input_signature
        if len(inputs) != 1:
            raise UserError(f"SavedModel {path} must take exactly one input, not {sorted(inputs)}.")
        (self._input_name, spec), = inputs.items()
        outputs = signature.structured_outputs
        self._output_name = "prediction" if "prediction" in outputs else next(iter(outputs))
        self._signature = signature
        self._loaded = loaded
        self.height = int(height or spec.shape[1] or 299)
        self.width = int(width or spec.shape[2] or 299)
        self.class_count = outputs[self._output_name].shape[-1]

    def scores(self, batch) -> np.ndarray:
        result = self._signature(**{self._input_name: tf.constant(batch, tf.float32)})
        return result[self._output_name].numpy()


def load_classifier(
    path: str, *, input_layer: str = "Placeholder", output_layer: str = "final_result", height=None, width=None
) -> Classifier:
    """Loads a frozen graph file or a SavedModel folder (see the module docstring)."""
    if os.path.isdir(path):
        return SavedModelClassifier(path, height, width)
    if not os.path.exists(path):
        raise UserError(f"Graph file {path} not found.")
    return FrozenGraphClassifier(path, input_layer, output_layer, height, width)


def read_labels(path: str) -> list[str]:
    """The labels file: one label per line, as retrain writes it."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip("\n")]
    except OSError as e:
        raise UserError(f"Cannot read labels file {path}: {e.strerror or e}") from e


def image_loader(classifier: Classifier, mean: float, std: float) -> Callable[[str], np.ndarray]:
    """path -> what the classifier's input takes, preprocessed as label_image.py did."""
    if classifier.takes_encoded_images:

        def load_bytes(path):
            images.read_image(path)  # Reject what is not an image, by name.
            with open(path, "rb") as f:
                return np.array(f.read(), dtype=object)

        return load_bytes
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
) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """Yields (path, scores float32 [classes] or None, error or None) for each path, in order.

    Images are decoded ahead on threads and scored in batches; an unreadable file
    gives its error instead of scores and the rest go on.
    """
    load = image_loader(classifier, mean, std)
    workers = workers or os.cpu_count() or 1
    with Progress(len(paths), "Classifying", enabled=show_progress) as progress:
        for positions, batch, errors in batching.decoded_batches(paths, load, batch_size, workers):
            results = {}
            if batch is not None:
                for position, row in zip(positions, classifier.scores(batch)):
                    results[position] = (row, None)
            for position, error in errors:
                results[position] = (None, error)
            for position in sorted(results):
                row, error = results[position]
                yield paths[position], row, error
            progress.update(len(results))


def find_images(targets: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expands files and folders (walked recursively, hidden entries skipped) to image paths.

    Returns:
      (image paths, [(target, error)] for targets that do not exist). Files named
      directly are kept whatever their extension; inside folders, only image
      extensions count.
    """
    from retrain.image_lists import list_images

    found, missing = [], []
    for target in targets:
        if os.path.isdir(target):
            found.extend(os.path.join(target, name) for name in list_images(target))
        elif os.path.exists(target):
            found.append(target)
        else:
            missing.append((target, f"{target} not found"))
    return found, missing

