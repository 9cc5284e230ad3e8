"""Accuracy figures for a labelled set: per-label rates, confusion matrix, a threshold.

Pure numpy, from three arrays per image: the true label index, the predicted (top)
label index and the top score.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class LabelStats:
    """How one label fared. Rates are in [0, 1]; None where nothing was there to count."""

    count: int
    hit_rate: float | None
    mean_score_hits: float | None
    mean_score_misses: float | None
    precision: float | None
    recall: float | None
    f1: float | None


@dataclasses.dataclass
class Evaluation:
    """The whole report.

    Attributes:
      accuracy: share of images whose top label is the true one.
      labels: label names in class order.
      confusion_matrix: int [labels, labels]; rows true label, columns predicted.
      per_label: label -> LabelStats.
      mean_score_hits, mean_score_misses: mean top score over all hits / misses.
      suggested_threshold: midway between those two means: a top score below it is
        more like a miss than a hit, so callers can answer "not sure" there. None
        without both hits and misses.
    """

    accuracy: float
    labels: list[str]
    confusion_matrix: list[list[int]]
    per_label: dict[str, LabelStats]
    mean_score_hits: float | None
    mean_score_misses: float | None
    suggested_threshold: float | None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def evaluate(true: np.ndarray, predicted: np.ndarray, top_scores: np.ndarray, labels: list[str]) -> Evaluation:
    """Computes the report for images with these true / predicted indices and top scores."""
    true = np.asarray(true, np.int64)
    predicted = np.asarray(predicted, np.int64)
    top_scores = np.asarray(top_scores, np.float64)
    n = len(labels)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (true, predicted), 1)
    hits = true == predicted
    per_label = {}
    for index, label in enumerate(labels):
        mine = true == index
        count = int(mine.sum())
        true_positive = int(confusion[index, index])
        predicted_as = int(confusion[:, index].sum())
        recall = true_positive / count if count else None
        precision = true_positive / predicted_as if predicted_as else None
        if precision is not None and recall is not None and precision + recall > 0:
            f1 = 2 * precision * recall / (precision + recall)
        else:
            f1 = 0.0 if precision is not None and recall is not None else None
        per_label[label] = LabelStats(
            count=count,
            hit_rate=recall,
            mean_score_hits=_mean(top_scores[mine & hits]),
            mean_score_misses=_mean(top_scores[mine & ~hits]),
            precision=precision,
            recall=recall,
            f1=f1,
        )
    mean_hits = _mean(top_scores[hits])
    mean_misses = _mean(top_scores[~hits])
    threshold = (mean_hits + mean_misses) / 2 if mean_hits is not None and mean_misses is not None else None
    return Evaluation(
        accuracy=float(hits.mean()) if hits.size else 0.0,
        labels=list(labels),
        confusion_matrix=confusion.tolist(),
        per_label=per_label,
        mean_score_hits=mean_hits,
        mean_score_misses=mean_misses,
        suggested_threshold=threshold,
    )
