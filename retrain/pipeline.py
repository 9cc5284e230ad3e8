"""One whole retrain run: image lists -> bottlenecks -> training -> exports.

``run(config)`` is what the ``retrain`` command does, callable from Python without
absl flags. It logs progress as retrain.py did and returns a RetrainResult; problems
with the user's input raise UserError before any long work starts where possible.
"""

import dataclasses
import os
import random

import numpy as np
import tensorflow as tf
from absl import logging

from retrain import (
    batching,
    bottlenecks,
    calibration,
    devices,
    distortions,
    exports,
    hub_module,
    image_lists,
    images,
    memory,
    module_inputs,
    storage,
    train,
)
from retrain.calibration import CalibrationReport
from retrain.config import RetrainConfig
from retrain.errors import Interrupted, UserError
from retrain.exports import checkpoint, frozen_graph
from retrain.preprocessing import Preprocessing


@dataclasses.dataclass
class RetrainResult:
    """What a run produced.

    Attributes:
      labels: class labels in class order (the lines of the labels file).
      test_accuracy: in [0, 1], or None without test images.
      test_count: number of test images evaluated.
      misclassified: (image path, predicted label) per wrong test image.
      failed_images: (image path, reason) per image that could not be decoded.
      seed: the random seed the run used.
      exports: reports of the outputs that make one, by OutputConfig field, e.g.
        exports["output_tflite"], the TFLite model's agreement with the frozen graph.
      bottlenecks_computed: bottlenecks computed by the module in this run.
      bottlenecks_reused: bottlenecks read from the cache.
      calibration: the temperature and unknown threshold fitted on validation, with
        expected calibration errors (calibration.CalibrationReport), or None.
      report_path: the HTML evaluation report written (--report_dir), or ''.
    """

    labels: list[str]
    test_accuracy: float | None
    test_count: int
    misclassified: list[tuple[str, str]]
    failed_images: list[tuple[str, str]]
    seed: int
    exports: dict = dataclasses.field(default_factory=dict)
    bottlenecks_computed: int = 0
    bottlenecks_reused: int = 0
    calibration: CalibrationReport | None = None
    report_path: str = ""

    @property
    def tflite_parity(self):
        """The TFLite model's agreement with the frozen graph (exports.tflite.TFLiteParity), or None."""
        return self.exports.get("output_tflite")


def check_output_locations(config: RetrainConfig) -> None:
    """Raises UserError unless every output location can be written (fails fast).

    Not the bottleneck cache: a cache that cannot be written (read-only, another
    team's) is used as it is, with a warning (see bottlenecks).
    """
    exports.check_locations(config.output)


def prepare_summaries_dir(summaries_dir: str) -> None:
    """Removes the train/ and validation/ event folders of an earlier run, nothing else."""
    for name in ("train", "validation"):
        storage.rmtree(storage.join(summaries_dir, name))
    storage.makedirs(summaries_dir)


def _bottlenecks(config: RetrainConfig, lists, extractor, preprocessing: Preprocessing, seed: int):
    """The bottleneck sets for training, and what was skipped.

    Without distortions every set comes from the cache. With them, validation and
    testing still do (undistorted, as in retrain.py); training comes from cached
    distorted copies (--distorted_copies) or from batches distorted at every step.

    Returns:
      (sets, failed images [(path, reason)], a DistortedBatches for train() or None,
      (bottlenecks computed, bottlenecks reused)).
    """
    height, width = extractor.height, extractor.width
    distort = config.distortions

    # Through a lambda: the module is loaded only if some bottleneck has to be computed.
    extract = devices.split_across(lambda batch: extractor.extract(batch), devices.extraction_devices())

    common = dict(bottleneck_dir=config.bottleneck_dir, module_handle=extractor.cache_name)
    cache = bottlenecks.load_or_compute(
        image_lists=lists,
        **common,
        tag=preprocessing.cache_tag,
        module_fingerprint=extractor.fingerprint,
        dim=extractor.feature_dim,
        decode=module_inputs.module_input_decoder(preprocessing, config.bottleneck_batch_size, hint=True),
        extract=extract,
        categories=("testing", "validation") if distort.enabled else image_lists.CATEGORIES,
    )
    sets, failed = dict(cache.sets), list(cache.failed_images)
    counts = (cache.computed, cache.reused)
    if not distort.enabled:
        return sets, failed, None, counts
    distorter = distortions.Distorter(distort, height, width)
    if distort.distorted_copies:
        logging.info("Using %d cached distorted copies of each training image.", distort.distorted_copies)
        entries = bottlenecks.cache_entries(
            image_lists=lists,
            **common,
            categories=("training",),
            copies=distort.distorted_copies,
            copy_tag=distortions.settings_tag(distort),
        )
        copies = bottlenecks.load_or_compute_entries(
            entries,
            dim=extractor.feature_dim,
            decode=batching.threaded_decoder(
                lambda e: distorter(images.read_image(e.image_path), distortions.copy_seed(e.relative_path, e.copy_index)),
                config.bottleneck_batch_size,
            ),
            extract=extract,
            **common,
            module_fingerprint=extractor.fingerprint,
        )
        sets["training"] = copies.sets["training"]
        counts = (counts[0] + copies.computed, counts[1] + copies.reused)
        return sets, failed + copies.failed_images, None, counts
    logging.info("Distorting training images at every step (slow: a module pass per sample).")
    training = bottlenecks.cache_entries(image_lists=lists, **common, categories=("training",))
    workers = os.cpu_count() or 1
    kept, positions, training_failed = distortions.decode_training_images(
        [e.image_path for e in training], budget_bytes=distortions.memory_budget_bytes(), workers=workers
    )
    batches = distortions.DistortedBatches(
        images=kept,
        labels=[training[i].label_index for i in positions],
        distorter=distorter,
        extract=extract,
        batch_size=config.train.train_batch_size,
        seed=seed,
        workers=workers,
    )
    return sets, failed + training_failed, batches, counts


def _representative_paths(lists, failed_images, seed: int) -> tuple[str, ...]:
    """Every readable training image, in an order drawn from the seed (int8 takes the first few hundred)."""
    failed = {path for path, _ in failed_images}
    paths = [
        lists.image_path(label, name)
        for label, sets in lists.items()
        for name in sets["training"]
        if lists.image_path(label, name) not in failed
    ]
    order = np.random.default_rng(seed).permutation(len(paths))
    return tuple(paths[i] for i in order)


def _logits(bottleneck_set, weights, biases) -> np.ndarray:
    return bottleneck_set.features @ weights + biases


def _calibrate(config: RetrainConfig, sets, weights, biases) -> calibration.CalibrationReport | None:
    """Fits the temperature and chooses the unknown threshold on validation; logs what they mean."""
    validation, test = sets["validation"], sets["testing"]
    if not len(validation):
        logging.warning("No validation images: scores are not calibrated and no unknown threshold is chosen.")
        return None
    report = calibration.calibrate(
        _logits(validation, weights, biases),
        validation.labels,
        _logits(test, weights, biases),
        test.labels,
        unknown_threshold=config.unknown_threshold,
        target_precision=config.unknown_target_precision,
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
    how = "--unknown_threshold" if config.unknown_threshold is not None else (
        f"auto, --unknown_target_precision {config.unknown_target_precision:g}")
    accuracy = f" at {threshold.accuracy * 100:.0f}% accuracy" if threshold.accuracy is not None else ""
    logging.info(
        "Below %.4g, answer unknown: keeps %.0f%% of validation images%s (%s).",
        threshold.value, threshold.coverage * 100, accuracy, how,
    )
    return report


def _write_report(config: RetrainConfig, sets, labels, weights, biases, model_calibration) -> str:
    """The HTML evaluation report of the test set (validation when there is none); its path."""
    from retrain import report

    category = "testing" if len(sets["testing"]) else "validation"
    chosen = sets[category]
    if not len(chosen):
        logging.warning("No test or validation images: no evaluation report is written.")
        return ""
    logits = _logits(chosen, weights, biases)
    data = report.ReportData(
        title=f"{storage.basename(config.output.output_graph) or 'retrained model'}: "
        f"{'test' if category == 'testing' else 'validation'} images of {config.image_dir}",
        labels=labels,
        image_paths=chosen.image_paths,
        truth=chosen.labels,
        scores=calibration.softmax(logits),
        calibrated=calibration.softmax(logits, model_calibration.temperature) if model_calibration else None,
        unknown_threshold=model_calibration.unknown_threshold if model_calibration else None,
    )
    path = report.write_report(config.report_dir, data)
    logging.info("Evaluation report written to %s", path)
    return path


def _held_out(sets) -> exports.HeldOutImages | None:
    """The test set, else the validation set, as exports check converted models on."""
    for category in ("testing", "validation"):
        chosen = sets[category]
        if len(chosen):
            return exports.HeldOutImages(category, list(chosen.image_paths), chosen.labels, chosen.features)
    return None


def run(config: RetrainConfig) -> RetrainResult:
    """Retrains a classifier on config.image_dir and writes the configured outputs.

    Raises:
      UserError: bad input (missing folder, fewer than two classes, unloadable
        module, unwritable output).
    """
    if not config.image_dir:
        raise UserError("Must set flag --image_dir.")
    seed = config.train.random_seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    logging.info("Random seed: %d (pass --random_seed=%d to repeat this run)", seed, seed)

    lists = image_lists.create_image_lists(
        config.image_dir, config.split.testing_percentage, config.split.validation_percentage
    )
    image_lists.check_enough_classes(lists, config.image_dir)
    image_lists.warn_about_empty_sets(lists)
    check_output_locations(config)
    if config.report_dir:
        from retrain import report

        report.check_available()
        exports.check_folder(config.report_dir, "evaluation report")
    labels = list(lists.keys())

    gpus = tf.config.list_physical_devices("GPU")
    logging.info("TensorFlow runs on %s.", f"{len(gpus)} GPU(s)" if gpus else "the CPU (no GPU found)")
    extractor = hub_module.load_feature_extractor(
        config.tfhub_module, config.image_size, config.tfhub_cache_dir, facts_dir=config.bottleneck_dir
    )
    logging.info(
        "Using module %s with image size %dx%d.", config.tfhub_module, extractor.height, extractor.width
    )
    preprocessing = Preprocessing(extractor.height, extractor.width, config.fast_jpeg_decode)
    sets, failed_images, batch_source, (computed, reused) = _bottlenecks(config, lists, extractor, preprocessing, seed)
    memory.return_freed_memory()
    training_classes = len(set(sets["training"].labels.tolist())) if batch_source is None else len(batch_source.by_class)
    if training_classes < 2:
        raise UserError(
            f"Only {training_classes} class(es) have training images under {config.image_dir}; "
            "at least two are needed. Add images or lower the testing and validation percentages."
        )

    out = config.output
    frozen_module = frozen_graph.FrozenModule(extractor, cache_dir=config.bottleneck_dir)

    def model_with(weights, biases, **more) -> exports.TrainedModel:
        return exports.TrainedModel(
            extractor=extractor,
            frozen_module=frozen_module,
            preprocessing=preprocessing,
            labels=labels,
            weights=weights,
            biases=biases,
            final_tensor_name=out.final_tensor_name,
            **more,
        )

    def store_intermediate(step, weights, biases):
        checkpoint.write_checkpoint(out.checkpoint_path, weights, biases)
        path = out.intermediate_output_graphs_dir + "intermediate_" + str(step) + ".pb"
        logging.info("Save intermediate result to : %s", path)
        frozen_graph.write(path, model_with(weights, biases))

    if out.summaries_dir:
        prepare_summaries_dir(out.summaries_dir)
    try:
        result = train.train(
            sets=sets,
            class_count=len(labels),
            train_config=config.train,
            seed=seed,
            summaries_dir=out.summaries_dir,
            intermediate_store_frequency=out.intermediate_store_frequency,
            on_intermediate=store_intermediate,
            batch_source=batch_source,
        )
    except KeyboardInterrupt as e:
        raise Interrupted(
            "Interrupted during training; the output graph and labels are untouched and the bottleneck "
            f"cache in {config.bottleneck_dir} is complete, so a rerun starts training at once."
        ) from e
    if result.test_accuracy is None:
        logging.warning("No test images: final test accuracy is not reported.")
    else:
        logging.info("Final test accuracy = %.1f%% (N=%d)", result.test_accuracy * 100, result.test_count)
    misclassified = [(path, labels[index]) for path, index in result.misclassified]
    if config.print_misclassified_test_images:
        logging.info("=== MISCLASSIFIED TEST IMAGES ===")
        for path, label in misclassified:
            logging.info("%70s  %s", path, label)

    calibration_report = _calibrate(config, sets, result.weights, result.biases)
    if calibration_report is not None:
        model_calibration = calibration_report.calibration
    elif config.unknown_threshold is not None:
        model_calibration = calibration.Calibration(1.0, config.unknown_threshold)
    else:
        model_calibration = None
    model = model_with(
        result.weights,
        result.biases,
        calibration=model_calibration,
        representative_paths=_representative_paths(lists, failed_images, seed),
        held_out=_held_out(sets),
    )
    reports = exports.write_outputs(out, model)
    if out.summaries_dir:
        train.write_graph_summary(out.summaries_dir, frozen_graph.structure_of(model))
        validation = sets["validation"]
        if len(validation):
            train.write_evaluation_summaries(
                out.summaries_dir,
                config.train.how_many_training_steps - 1,
                labels,
                calibration.softmax(_logits(validation, result.weights, result.biases)),
                validation.labels,
            )
    report_path = ""
    if config.report_dir:
        report_path = _write_report(config, sets, labels, result.weights, result.biases, model_calibration)
    if failed_images:
        logging.warning("Skipped %d file(s) that are not readable images:", len(failed_images))
        for path, reason in failed_images:
            logging.warning("  %s", reason)
    return RetrainResult(
        labels=labels,
        test_accuracy=result.test_accuracy,
        test_count=result.test_count,
        misclassified=misclassified,
        failed_images=failed_images,
        seed=seed,
        exports=reports,
        bottlenecks_computed=computed,
        bottlenecks_reused=reused,
        calibration=calibration_report,
        report_path=report_path,
    )
