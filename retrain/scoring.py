"""How a model's logits become the scores it answers with, and what travels with it to decide "unknown".

Scores are softmax(logits); calibrated scores are softmax(logits / temperature), the
temperature fitted on validation (evaluation.calibration); a calibrated top score below
the unknown threshold answers "unknown". Every format carries both numbers, and every
reader (label-image, the report) turns them into scores the same way, here. Pure numpy.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How to turn logits into calibrated scores, and when to answer "unknown".

    Attributes:
      temperature: calibrated scores are softmax(logits / temperature); > 0.
      unknown_threshold: a calibrated top score below it means "unknown"; None when
        no threshold was chosen.
    """

    temperature: float = 1.0
    unknown_threshold: float | None = None


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float [n, classes] logits -> softmax(logits / temperature), float64."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def rescale(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated scores from softmax scores: softmax(log(scores) / temperature).

    Equal to softmax(logits / temperature), since softmax ignores a shift of the
    logits; for models that give scores only.
    """
    with np.errstate(divide="ignore"):
        logs = np.log(np.asarray(scores, np.float64))
    return softmax(np.where(np.isfinite(logs), logs, -1e30), temperature).astype(np.float32)
