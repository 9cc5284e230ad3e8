"""Mode "cached": training draws from every training image's cached bottleneck (retrain.py without distortions)."""

from retrain.cache import plan
from retrain.config import RetrainConfig
from retrain.training.modes import ModeContext, TrainingData


def training_images(config: RetrainConfig) -> plan.TrainingImages:
    del config  # Always the same: each training image's plain bottleneck.
    return plan.PLAIN


def training_data(context: ModeContext) -> TrainingData:
    """Every set from the cache, in one pass (retrain.py's pre-pass)."""
    (entries,) = context.entry_groups(plan.PLAIN)
    found = context.fill_from_files(entries)
    return TrainingData.held_out_from(found, examples=found.sets["training"])
