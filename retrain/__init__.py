"""retrain: image classifiers by transfer learning, the successor of TensorFlow's retrain.py.

Python API (no absl flags needed):

  import retrain
  lists = retrain.create_image_lists("flower_photos", 10, 10)
  result = retrain.run(retrain.RetrainConfig(image_dir="flower_photos"))
  comparison = retrain.compare(retrain.CompareConfig(
      modules=("module_a", "module_b"), run=retrain.RetrainConfig(image_dir="flower_photos")))
  answers = retrain.classify(retrain.LabelImageConfig(
      graph="/tmp/output_graph.pb", labels="/tmp/output_labels.txt", images=("x.jpg",)))
  report = retrain.evaluate(retrain.LabelImageConfig(
      graph="/tmp/output_graph.pb", labels="/tmp/output_labels.txt", image_dir="holdout"))

Importing this package does not import TensorFlow; ``run``, ``compare``, ``classify``
and ``evaluate`` do.
"""

from retrain.config import (
    CompareConfig,
    DistortionConfig,
    DoctorConfig,
    FineTuneConfig,
    LabelImageConfig,
    OutputConfig,
    RetrainConfig,
    SplitConfig,
    TrainConfig,
)
from retrain.data.image_lists import create_image_lists
from retrain.errors import ImageError, UserError

__version__ = "0.1.0"


def run(config: RetrainConfig):
    """Runs a whole retraining (see retrain.pipeline.run) and returns its RetrainResult."""
    from retrain import pipeline

    return pipeline.run(config)


def compare(config: CompareConfig):
    """Trains and measures several modules on one folder (see retrain.comparison.runs.compare); a Comparison."""
    from retrain.comparison import runs

    return runs.compare(config)


def examine(config: DoctorConfig):
    """Examines an image folder for label errors, duplicates, outliers and shortcuts (see
    retrain.doctor.examine.examine); a Diagnosis."""
    from retrain.doctor import examine as examining

    return examining.examine(config)


def classify(config: LabelImageConfig, show_progress: bool | None = False):
    """Classifies images with an exported model (see retrain.label_image.classify)."""
    from retrain import label_image

    return label_image.classify(config, show_progress)


def evaluate(config: LabelImageConfig, show_progress: bool | None = False):
    """Evaluates an exported model on a labelled folder (see retrain.label_image.evaluate)."""
    from retrain import label_image

    return label_image.evaluate(config, show_progress)


__all__ = [
    "CompareConfig",
    "DistortionConfig",
    "DoctorConfig",
    "FineTuneConfig",
    "ImageError",
    "LabelImageConfig",
    "OutputConfig",
    "RetrainConfig",
    "SplitConfig",
    "TrainConfig",
    "UserError",
    "classify",
    "compare",
    "create_image_lists",
    "evaluate",
    "examine",
    "run",
    "__version__",
]
