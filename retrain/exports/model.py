"""What every exporter is given: the trained classifier and the images to check it on."""

import dataclasses

import numpy as np

from retrain.calibration import Calibration, softmax
from retrain.exports.frozen_graph import FrozenModule
from retrain.hub_module import FeatureExtractor
from retrain.preprocessing import Preprocessing


@dataclasses.dataclass(frozen=True)
class HeldOutImages:
    """Images the model never trained on, with what the frozen graph computed for them.

    Attributes:
      category: 'testing', or 'validation' when there are no test images.
      image_paths: n image files.
      labels: int64 [n] true class indices.
      bottlenecks: float32 [n, dim], their cached module outputs (what the frozen
        graph's module gives for them).
    """

    category: str
    image_paths: list[str]
    labels: np.ndarray
    bottlenecks: np.ndarray


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A retrained classifier, ready to be written in any format.

    Attributes:
      extractor: the loaded module.
      frozen_module: the module frozen once, shared by every graph written.
      preprocessing: how image files become module inputs.
      labels: class labels in class order.
      weights: float32 [dim, classes]; biases: float32 [classes].
      final_tensor_name: the softmax output's name in graphs.
      calibration: temperature and "unknown" threshold, or None when not fitted.
      representative_paths: training images that stand for the data when a
        format needs examples (int8 quantization).
      held_out: images to measure a converted model's agreement on, or None.
    """

    extractor: FeatureExtractor
    frozen_module: FrozenModule
    preprocessing: Preprocessing
    labels: list[str]
    weights: np.ndarray
    biases: np.ndarray
    final_tensor_name: str = "final_result"
    calibration: Calibration | None = None
    representative_paths: tuple[str, ...] = ()
    held_out: HeldOutImages | None = None

    def scores_of_bottlenecks(self, bottlenecks: np.ndarray) -> np.ndarray:
        """float32 [n, classes]: the final layer's softmax on float32 [n, dim] bottlenecks."""
        logits = np.asarray(bottlenecks, np.float32) @ self.weights + self.biases
        return softmax(logits).astype(np.float32)
