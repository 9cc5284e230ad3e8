"""retrain: image classifiers by transfer learning, the successor of TensorFlow's retrain.py.

Python API (no absl flags needed):

  import retrain
  lists = retrain.create_image_lists("flower_photos", 10, 10)
  result = retrain.run(retrain.RetrainConfig(image_dir="flower_photos"))

Importing this package does not import TensorFlow; ``run`` does.
"""

from retrain.config import (
    DistortionConfig,
    LabelImageConfig,
    OutputConfig,
    RetrainConfig,
    SplitConfig,
    TrainConfig,
)
from retrain.errors import ImageError, UserError
from retrain.image_lists import create_image_lists

__version__ = "0.1.0"


def run(config: RetrainConfig):
    """Runs a whole retraining (see retrain.pipeline.run) and returns its RetrainResult."""
    from retrain import pipeline

    return pipeline.run(config)


__all__ = [
    "DistortionConfig",
    "ImageError",
    "LabelImageConfig",
    "OutputConfig",
    "RetrainConfig",
    "SplitConfig",
    "TrainConfig",
    "UserError",
    "create_image_lists",
    "run",
    "__version__",
]
