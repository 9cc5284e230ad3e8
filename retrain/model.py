"""The trained classifier as one object: the module it used, its final layer, labels, decoding, calibration.

Evaluation (the final test, calibration, the report, TensorBoard) and every export go
through a TrainedModel, so what they measure and write is always the same classifier.
It scores bottlenecks only when they were computed by its own module (their source is
its module's identity); otherwise (a module tuned after the cache was filled) it
decodes the images and runs its module on them.
"""

import dataclasses

import numpy as np

from retrain.cache.sets import BottleneckSet
from retrain.data import module_inputs
from retrain.data.preprocessing import Preprocessing
from retrain.errors import UserError
from retrain.module.extractor import FeatureExtractor
from retrain.module.frozen import FrozenModule
from retrain.scoring import Calibration, softmax


@dataclasses.dataclass(frozen=True)
class HeldOutImages:
    """Images the model never trained on, to check a converted model against it.

    Attributes:
      category: 'testing', or 'validation' when there are no test images.
      images: their bottlenecks, labels and paths.
    """

    category: str
    images: BottleneckSet

    @property
    def image_paths(self) -> list[str]:
        return self.images.image_paths

    @property
    def labels(self) -> np.ndarray:
        return self.images.labels


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A retrained classifier, ready to be measured and written in any format.

    Attributes:
      frozen_module: its module, frozen once and shared by every graph written (its
        extractor is `module`).
      preprocessing: how image files become module inputs.
      labels: class labels in class order.
      weights: float32 [dim, classes]; biases: float32 [classes].
      final_tensor_name: the softmax output's name in graphs.
      calibration: temperature and "unknown" threshold, or None when not fitted.
      representative_paths: training images that stand for the data when a
        format needs examples (int8 quantization).
      held_out: images to measure a converted model's agreement on, or None.
      training_split: which images it was trained on (data.image_lists.ImageLists.record),
        kept in every format so label-image can tell them from held-out ones; {} unknown.
    """

    frozen_module: FrozenModule
    preprocessing: Preprocessing
    labels: list[str]
    weights: np.ndarray
    biases: np.ndarray
    final_tensor_name: str = "final_result"
    calibration: Calibration | None = None
    representative_paths: tuple[str, ...] = ()
    held_out: HeldOutImages | None = None
    training_split: dict = dataclasses.field(default_factory=dict)

    @property
    def module(self) -> FeatureExtractor:
        """The module it classifies with (tuned or not)."""
        return self.frozen_module.extractor

    def logits_of_bottlenecks(self, bottlenecks: np.ndarray) -> np.ndarray:
        """float32 [n, classes]: the final layer on float32 [n, dim] bottlenecks of its module."""
        return np.asarray(bottlenecks, np.float32) @ self.weights + self.biases

    def logits(self, images: BottleneckSet) -> np.ndarray:
        """float32 [n, classes] for a set of images, in its order.

        Its bottlenecks when its module computed them; else the images are decoded and
        run through the module.

        Raises:
          UserError: an image can no longer be read.
        """
        if images.source == self.module.identity:
            return self.logits_of_bottlenecks(images.features)
        return self.logits_of_bottlenecks(self.bottlenecks_of_files(images.image_paths))

    def scores(self, images: BottleneckSet) -> np.ndarray:
        """float32 [n, classes]: softmax of logits(images)."""
        return softmax(self.logits(images)).astype(np.float32)

    def bottlenecks_of_files(self, paths: list[str], batch_size: int = 32) -> np.ndarray:
        """float32 [n, dim]: its module's features of image files, decoded as the cache decodes them."""
        features = np.zeros((len(paths), self.module.feature_dim), np.float32)
        decode = module_inputs.module_input_decoder(self.preprocessing, batch_size)
        for positions, batch, errors in decode(paths):
            if errors:
                raise UserError(f"Cannot score {paths[errors[0][0]]} again: {errors[0][1]}")
            if batch is not None:
                features[positions] = np.asarray(self.module.extract(batch))
        return features

    def with_calibration(self, calibration: Calibration | None) -> "TrainedModel":
        return dataclasses.replace(self, calibration=calibration)


def representative_order(training_paths: list[str], failed_images: list[tuple[str, str]], seed: int) -> tuple[str, ...]:
    """Every readable training image, in an order drawn from the seed: a model's
    representative_paths (int8 quantization takes the first few hundred)."""
    failed = {path for path, _ in failed_images}
    paths = [path for path in training_paths if path not in failed]
    order = np.random.default_rng(seed).permutation(len(paths))
    return tuple(paths[i] for i in order)
