"""The trained model measured on the images it never trained on: the final test, calibration, the report.

Every figure goes through the TrainedModel (model.py), so it is the classifier that is
exported that is measured, whatever its module. Logs as retrain.py did where it did
(``Final test accuracy = ...``, the misclassified list).
"""

import dataclasses

import numpy as np
from absl import logging

from retrain.cache.sets import BottleneckSet
from retrain.evaluation import calibration, metrics
from retrain.model import HeldOutImages, TrainedModel
from retrain.scoring import Calibration, softmax

# Fewer validation images than this fit a temperature and a threshold to noise: measured
# on real photos, 7-24 images made the expected calibration error worse (0.176 -> 0.278).
MIN_CALIBRATION_IMAGES = 50


@dataclasses.dataclass
class TestResult:
    """The final test.

    Attributes:
      accuracy: in [0, 1], or None without test images.
      count: how many test images were evaluated (drawn with replacement when
        --test_batch_size is not -1).
      misclassified: (image path, predicted label) per wrong test image.
      interval: the 95% Wilson interval of the accuracy (low, high), or None.
      distinct: how many distinct test images the count was drawn from.
    """

    accuracy: float | None
    count: int
    misclassified: list[tuple[str, str]]
    interval: tuple[float, float] | None = None
    distinct: int = 0


def final_test(model: TrainedModel, testing: BottleneckSet, rows: np.ndarray) -> TestResult:
    """Accuracy of model on the given rows of the test set, and its mistakes."""
    if len(testing) == 0 or len(rows) == 0:
        return TestResult(None, 0, [])
    chosen = testing.subset(rows)
    predictions = model.logits(chosen).argmax(axis=1)
    wrong = np.flatnonzero(predictions != chosen.labels)
    misclassified = [(chosen.image_paths[i], model.labels[int(predictions[i])]) for i in wrong]
    hits = int(np.sum(predictions == chosen.labels))
    return TestResult(hits / len(rows), len(rows), misclassified, metrics.wilson_interval(hits, len(rows)),
                      len(set(np.asarray(rows).tolist())))


def accuracy(model: TrainedModel, images: BottleneckSet) -> float | None:
    """The model's accuracy on every image of a set, in [0, 1]; None for an empty set."""
    if not len(images):
        return None
    return float(np.mean(model.logits(images).argmax(axis=1) == images.labels))


def log_final_test(result: TestResult, print_misclassified: bool) -> None:
    """retrain.py's final lines: the test accuracy, and the misclassified images when asked."""
    if result.accuracy is None:
        logging.warning("No test images: final test accuracy is not reported.")
    else:
        logging.info("Final test accuracy = %.1f%% (N=%d)", result.accuracy * 100, result.count)
        logging.info("%s", describe_interval(result))
    if print_misclassified:
        logging.info("=== MISCLASSIFIED TEST IMAGES ===")
        for path, label in result.misclassified:
            logging.info("%70s  %s", path, label)


def describe_interval(result: TestResult) -> str:
    """One line on how sure the test accuracy is: its 95% interval and what one image weighs."""
    low, high = result.interval
    drawn = (f", drawn with replacement from {result.distinct} test images" if result.distinct != result.count
             else "")
    return (f"95% interval of the test accuracy: {low * 100:.1f}-{high * 100:.1f}% (Wilson; {result.count} test "
            f"images{drawn}; one image is {100 / result.count:.2g} points).")


def calibrate(
    model: TrainedModel,
    validation: BottleneckSet,
    testing: BottleneckSet,
    *,
    unknown_threshold: float | None,
    target_precision: float,
) -> tuple[calibration.CalibrationReport | None, Calibration | None]:
    """Fits the temperature and chooses the unknown threshold on validation; logs what they mean.

    Returns:
      (the report, or None without validation images; the calibration the model
      carries: the fitted one, or a given threshold alone, or None).
    """
    fixed = Calibration(1.0, unknown_threshold) if unknown_threshold is not None else None
    if not len(validation):
        logging.warning("No validation images: scores are not calibrated and no unknown threshold is chosen.")
        return None, fixed
    if len(validation) < MIN_CALIBRATION_IMAGES:
        logging.warning(
            "Only %d validation images: too few to fit a temperature and choose an unknown threshold, which would "
            "make scores less reliable, not more; at least %d are needed (add images or raise "
            "--validation_percentage). Scores are not calibrated.", len(validation), MIN_CALIBRATION_IMAGES)
        return None, fixed
    report = calibration.calibrate(
        model.logits(validation),
        validation.labels,
        model.logits(testing),
        testing.labels,
        unknown_threshold=unknown_threshold,
        target_precision=target_precision,
    )
    on_test = (
        f", on test {report.ece_test_before:.3f} -> {report.ece_test_after:.3f}" if report.ece_test_before is not None else ""
    )
    logging.info(
        "Calibration: temperature %.3f fitted on %d validation images; expected calibration error on "
        "validation %.3f -> %.3f%s.",
        report.calibration.temperature, report.validation_count, report.ece_validation_before,
        report.ece_validation_after, on_test,
    )
    threshold = report.threshold
    how = "--unknown_threshold" if unknown_threshold is not None else (
        f"auto, --unknown_target_precision {target_precision:g}")
    accuracy = f" at {threshold.accuracy * 100:.0f}% accuracy" if threshold.accuracy is not None else ""
    logging.info(
        "Below %.4g, answer unknown: keeps %.0f%% of validation images%s (%s).",
        threshold.value, threshold.coverage * 100, accuracy, how,
    )
    return report, report.calibration


def held_out_images(validation: BottleneckSet, testing: BottleneckSet) -> HeldOutImages | None:
    """The test set, else the validation set, as exports check converted models on."""
    for category, chosen in (("testing", testing), ("validation", validation)):
        if len(chosen):
            return HeldOutImages(category, chosen)
    return None


def write_report(model: TrainedModel, validation: BottleneckSet, testing: BottleneckSet, *, report_dir: str,
                 image_dir: str, model_name: str) -> str:
    """The HTML evaluation report of the test set (validation when there is none); its path, or ''."""
    from retrain.evaluation import report

    category = "testing" if len(testing) else "validation"
    chosen = testing if len(testing) else validation
    if not len(chosen):
        logging.warning("No test or validation images: no evaluation report is written.")
        return ""
    logits = model.logits(chosen)
    model_calibration = model.calibration
    data = report.ReportData(
        title=f"{model_name or 'retrained model'}: {'test' if category == 'testing' else 'validation'} images of {image_dir}",
        labels=model.labels,
        image_paths=chosen.image_paths,
        truth=chosen.labels,
        scores=softmax(logits),
        calibrated=softmax(logits, model_calibration.temperature) if model_calibration else None,
        unknown_threshold=model_calibration.unknown_threshold if model_calibration else None,
    )
    path = report.write_report(report_dir, data)
    logging.info("Evaluation report written to %s", path)
    return path
