"""Calibrated scores and an "unknown" answer: a temperature and a threshold that travel with the model.

softmax(logits) of a classifier trained to fit its training set is overconfident:
"99%" for almost anything, including things of no trained class. Dividing the logits
by a temperature T fitted on the validation bottlenecks (minimum negative
log-likelihood) makes the top score mean what it says; below a threshold chosen on
validation, the honest answer is "unknown".
"""

import dataclasses

import numpy as np

from retrain.scoring import Calibration, softmax

# Calibrated top scores below the threshold answer "unknown"; by default the threshold
# keeps at least this accuracy (precision) on the validation images it answers.
DEFAULT_TARGET_PRECISION = 0.95
_BINS = 15


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T).

    The NLL is convex in 1/T, so Newton's method on 1/T finds it. A weak prior on
    log T (standard normal, weighed as one image) keeps T finite when the validation
    images are all right by a wide margin, where the likelihood alone would push T to
    0 and every score to 1.

    Args:
      logits: float [n, classes]; labels: int [n], the true classes.

    Returns:
      T in [0.01, 100].
    """
    z = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    true_logit = z[np.arange(n), labels]
    beta = 1.0  # 1 / T
    for _ in range(100):
        p = softmax(z * beta)
        expected = (p * z).sum(axis=1)
        variance = np.maximum((p * z * z).sum(axis=1) - expected**2, 0.0)
        # d/dbeta of mean NLL, and of the prior term (log T)^2 / (2 n) = (log beta)^2 / (2 n).
        gradient = (expected - true_logit).mean() + np.log(beta) / (beta * n)
        curvature = variance.mean() + (1.0 - np.log(beta)) / (beta * beta * n)
        step = gradient / curvature if curvature > 1e-12 else np.sign(gradient) * beta
        new_beta = float(np.clip(beta - step, beta / 4, beta * 4))  # Damped: at most 4x a step.
        new_beta = float(np.clip(new_beta, 0.01, 100.0))
        if abs(new_beta - beta) < 1e-9 * beta:
            break
        beta = new_beta
    return 1.0 / beta


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = _BINS) -> float:
    """ECE: over equal-width bins of the top score, the gap between mean top score and
    accuracy, weighed by the share of images in each bin."""
    scores = np.asarray(scores, np.float64)
    if not len(scores):
        return 0.0
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            error += chosen.mean() * abs(confidence[chosen].mean() - correct[chosen].mean())
    return float(error)


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = _BINS) -> list[tuple[float, float, int]]:
    """(mean top score, accuracy, count) per non-empty equal-width bin: a reliability diagram's points."""
    scores = np.asarray(scores, np.float64)
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [
        (float(confidence[which == b].mean()), float(correct[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


@dataclasses.dataclass(frozen=True)
class Threshold:
    """An "unknown" threshold and what it means on the images it was chosen on.

    Attributes:
      value: calibrated top scores below it answer "unknown".
      coverage: share of those images answered (top score at or above value).
      accuracy: accuracy on the answered ones (None if none is).
    """

    value: float
    coverage: float
    accuracy: float | None


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, coverage, accuracy) for thresholds at each confidence, descending:
    answering the images with confidence >= threshold."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    sorted_confidence = np.asarray(confidence)[order]
    hits = np.cumsum(np.asarray(correct)[order])
    answered = np.arange(1, len(order) + 1)
    return sorted_confidence, answered / len(order), hits / answered


def measure_threshold(confidence: np.ndarray, correct: np.ndarray, value: float) -> Threshold:
    """What a given threshold means on images with these calibrated top scores."""
    confidence = np.asarray(confidence)
    answered = confidence >= value
    accuracy = float(np.asarray(correct)[answered].mean()) if answered.any() else None
    return Threshold(float(value), float(answered.mean()) if len(confidence) else 0.0, accuracy)


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, target_precision: float) -> Threshold:
    """The "auto" rule for the unknown threshold, on validation images.

    The lowest calibrated top score from which the images answered reach
    target_precision accuracy, and at least the score that answers only a
    target_precision share of them (the usual "keep 95% of the known" rule: things of
    no trained class rarely score above most known things, and this way the threshold
    means something even when validation has no errors).

    Args:
      confidence: float [n], calibrated top scores; correct: bool [n].
    """
    confidence = np.asarray(confidence, np.float64)
    if not len(confidence):
        raise ValueError("choosing a threshold needs images")
    thresholds, _, accuracy = coverage_curve(confidence, correct)
    reaching = np.flatnonzero(accuracy >= target_precision)
    # The last position (lowest threshold) whose answered set is still accurate enough.
    precise = thresholds[reaching[-1]] if len(reaching) else thresholds[0]
    kept = np.quantile(confidence, 1.0 - target_precision, method="lower")
    return measure_threshold(confidence, correct, float(max(precise, kept)))


@dataclasses.dataclass(frozen=True)
class CalibrationReport:
    """What calibrating a trained layer found.

    Attributes:
      calibration: the temperature and threshold that travel with the model.
      validation_count, test_count: images each figure is measured on.
      ece_validation_before, ece_validation_after: expected calibration error of
        softmax(logits) and of softmax(logits / T) on validation; likewise on test
        (None without test images).
      threshold: what the unknown threshold means on validation.
    """

    calibration: Calibration
    validation_count: int
    test_count: int
    ece_validation_before: float
    ece_validation_after: float
    ece_test_before: float | None
    ece_test_after: float | None
    threshold: Threshold


def calibrate(
    validation_logits: np.ndarray,
    validation_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    *,
    unknown_threshold: float | None = None,
    target_precision: float = DEFAULT_TARGET_PRECISION,
) -> CalibrationReport:
    """Fits the temperature on validation, measures it on both sets, and sets the threshold.

    Args:
      *_logits: float [n, classes]; *_labels: int [n].
      unknown_threshold: a threshold to use as it is; None chooses one (choose_threshold).
    """
    temperature = fit_temperature(validation_logits, validation_labels)
    calibrated = softmax(validation_logits, temperature)
    confidence = calibrated.max(axis=1)
    correct = calibrated.argmax(axis=1) == np.asarray(validation_labels)
    if unknown_threshold is None:
        threshold = choose_threshold(confidence, correct, target_precision)
    else:
        threshold = measure_threshold(confidence, correct, unknown_threshold)
    has_test = len(test_labels) > 0
    return CalibrationReport(
        calibration=Calibration(temperature, threshold.value),
        validation_count=len(validation_labels),
        test_count=len(test_labels),
        ece_validation_before=expected_calibration_error(softmax(validation_logits), validation_labels),
        ece_validation_after=expected_calibration_error(calibrated, validation_labels),
        ece_test_before=expected_calibration_error(softmax(test_logits), test_labels) if has_test else None,
        ece_test_after=expected_calibration_error(softmax(test_logits, temperature), test_labels) if has_test else None,
        threshold=threshold,
    )
