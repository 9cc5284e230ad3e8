"""Accuracy figures for a labelled set: per-label rates, confusion matrix, a threshold.

Pure numpy, from arrays per image: the true label index, the predicted (top) label
index and the top score; with an "unknown" threshold, also the confidence compared
with it (the calibrated top score), giving coverage (share answered) and accuracy on
the images answered.
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
    coverage: float | None = None
    covered_accuracy: float | None = None


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
      unknown_threshold: the threshold "unknown" answers were given at, or None.
      coverage: share of images answered (confidence at or above it), or None.
      covered_accuracy: accuracy on the answered images, or None (also when none was).
    """

    accuracy: float
    labels: list[str]
    confusion_matrix: list[list[int]]
    per_label: dict[str, LabelStats]
    mean_score_hits: float | None
    mean_score_misses: float | None
    suggested_threshold: float | None
    unknown_threshold: float | None = None
    coverage: float | None = None
    covered_accuracy: float | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _coverage(covered: np.ndarray, hits: np.ndarray) -> tuple[float | None, float | None]:
    """(share of covered images, accuracy on them) for boolean arrays of one set of images."""
    if not covered.size:
        return None, None
    return float(covered.mean()), (float(hits[covered].mean()) if covered.any() else None)


def wilson_interval(hits: int, count: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% (z = 1.96) Wilson score interval of an accuracy of hits in count, in [0, 1].

    Unlike hits / count +- 1.96 standard errors, it stays inside [0, 1] and is honest
    for small counts and accuracies near 100%, where test sets of retrain's users live.
    """
    if count <= 0:
        return 0.0, 1.0
    share = hits / count
    centre = (share + z * z / (2 * count)) / (1 + z * z / count)
    half = z / (1 + z * z / count) * np.sqrt(share * (1 - share) / count + z * z / (4 * count * count))
    # At 0 or count hits the bound is exactly 0 or 1 (floating point would miss it by an ulp).
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == count else min(1.0, centre + half)
    return float(low), float(high)


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, count: int) -> np.ndarray:
    """int64 [count, count]: rows true label index, columns predicted, entries image counts."""
    matrix = np.zeros((count, count), np.int64)
    np.add.at(matrix, (np.asarray(true, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix


def evaluate(
    true: np.ndarray,
    predicted: np.ndarray,
    top_scores: np.ndarray,
    labels: list[str],
    *,
    confidences: np.ndarray | None = None,
    threshold: float | None = None,
) -> Evaluation:
    """Computes the report for images with these true / predicted indices and top scores.

    Args:
      true, predicted: int [n] label indices.
      top_scores: float [n], the top softmax score of each image.
      labels: label names in class order.
      confidences: float [n] compared with threshold (default: top_scores).
      threshold: with it, coverage and accuracy on covered images are reported.
    """
    true = np.asarray(true, np.int64)
    predicted = np.asarray(predicted, np.int64)
    top_scores = np.asarray(top_scores, np.float64)
    confidences = top_scores if confidences is None else np.asarray(confidences, np.float64)
    covered = confidences >= threshold if threshold is not None else None
    n = len(labels)
    confusion = confusion_matrix(true, predicted, n)
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
        coverage, covered_accuracy = _coverage(covered[mine], hits[mine]) if covered is not None else (None, None)
        per_label[label] = LabelStats(
            count=count,
            hit_rate=recall,
            mean_score_hits=_mean(top_scores[mine & hits]),
            mean_score_misses=_mean(top_scores[mine & ~hits]),
            precision=precision,
            recall=recall,
            f1=f1,
            coverage=coverage,
            covered_accuracy=covered_accuracy,
        )
    mean_hits = _mean(top_scores[hits])
    mean_misses = _mean(top_scores[~hits])
    suggested = (mean_hits + mean_misses) / 2 if mean_hits is not None and mean_misses is not None else None
    coverage, covered_accuracy = _coverage(covered, hits) if covered is not None else (None, None)
    return Evaluation(
        accuracy=float(hits.mean()) if hits.size else 0.0,
        labels=list(labels),
        confusion_matrix=confusion.tolist(),
        per_label=per_label,
        mean_score_hits=mean_hits,
        mean_score_misses=mean_misses,
        suggested_threshold=suggested,
        unknown_threshold=threshold,
        coverage=coverage,
        covered_accuracy=covered_accuracy,
    )
