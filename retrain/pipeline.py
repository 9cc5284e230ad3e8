"""One whole retrain run: image lists -> bottlenecks -> training -> model -> evaluation and exports.

``run(config)`` is what the ``retrain`` command does, callable from Python without
absl flags: a few stage calls, each owned by its package. It logs progress as
retrain.py did and returns a RetrainResult; problems with the user's input raise
UserError before any long work starts where possible.
"""

import dataclasses
import functools
import random

from absl import logging

from retrain import exports
from retrain.config import RetrainConfig
from retrain.data import image_lists, storage
from retrain.data.preprocessing import Preprocessing
from retrain.errors import Interrupted, UserError
from retrain.evaluation import held_out
from retrain.evaluation.calibration import CalibrationReport
from retrain.exports import frozen_graph
from retrain.model import TrainedModel, representative_order
from retrain.module import hub
from retrain.module.frozen import FrozenModule
from retrain.runtime import memory
from retrain.training import modes, summaries, trainer


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
        expected calibration errors (evaluation.calibration.CalibrationReport), or None.
      report_path: the HTML evaluation report written (--report_dir), or ''.
      model: the trained model (model.TrainedModel) that was measured and exported.
      test_interval: the 95% Wilson interval (low, high) of test_accuracy, or None.
      refinement: what the training mode did after the head (training.fine_tune.FineTuneReport
        with --fine_tune), or None.
      validation_accuracy: the model's accuracy on every validation image, in [0, 1], or
        None without validation images; validation_count: how many.
      extraction_rate: images per second the module computed bottlenecks at in this run
        (decoding included), or None when the cache held (nearly) all.
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
    model: TrainedModel | None = None
    refinement: object = None
    test_interval: tuple[float, float] | None = None
    validation_accuracy: float | None = None
    validation_count: int = 0
    extraction_rate: float | None = None

    @property
    def tflite_parity(self):
        """The TFLite model's agreement with the frozen graph (exports.tflite.TFLiteParity), or None."""
        return self.exports.get("output_tflite")


def run(config: RetrainConfig) -> RetrainResult:
    """Retrains a classifier on config.image_dir and writes the configured outputs.

    Raises:
      UserError: bad input (missing folder, fewer than two classes, unloadable
        module, unwritable output).
    """
    if not config.image_dir:
        raise UserError("Must set flag --image_dir.")
    seed = _seed(config)
    lists = image_lists.load(config.image_dir, config.split)
    check_output_locations(config)
    extractor = hub.load_for_run(config)
    preprocessing = Preprocessing(extractor.height, extractor.width, config.fast_jpeg_decode)
    mode = modes.for_config(config)
    context = modes.ModeContext(config, lists, extractor, preprocessing, seed)
    data = mode.training_data(context)
    memory.return_freed_memory()
    data.check_enough_classes(config.image_dir)

    out = config.output
    model_with = functools.partial(
        TrainedModel, FrozenModule(extractor, cache_dir=config.bottleneck_dir), preprocessing, list(lists),
        final_tensor_name=out.final_tensor_name, training_split=lists.record(),
    )
    head = _train(config, data, len(lists), seed,
                  lambda step, w, b: exports.write_intermediate(out, model_with(w, b), step))
    model, refinement = modes.refined(mode, model_with(head.weights, head.biases), context, data)
    test = held_out.final_test(model, data.testing, head.test_rows)
    held_out.log_final_test(test, config.print_misclassified_test_images)

    calibration_report, calibration = held_out.calibrate(
        model, data.validation, data.testing,
        unknown_threshold=config.unknown_threshold, target_precision=config.unknown_target_precision,
    )
    model = dataclasses.replace(
        model,
        calibration=calibration,
        representative_paths=representative_order(lists.paths("training"), data.failed_images, seed),
        held_out=held_out.held_out_images(data.validation, data.testing),
    )
    reports = exports.write_outputs(out, model)
    _write_final_summaries(config, model, data)
    report_path = held_out.write_report(
        model, data.validation, data.testing, report_dir=config.report_dir, image_dir=config.image_dir,
        model_name=storage.basename(out.output_graph),
    ) if config.report_dir else ""
    _warn_about_failed(data.failed_images)
    return RetrainResult(
        labels=model.labels,
        test_accuracy=test.accuracy,
        test_count=test.count,
        test_interval=test.interval,
        misclassified=test.misclassified,
        failed_images=data.failed_images,
        seed=seed,
        exports=reports,
        bottlenecks_computed=data.computed,
        bottlenecks_reused=data.reused,
        calibration=calibration_report,
        report_path=report_path,
        model=model,
        refinement=refinement,
        validation_accuracy=held_out.accuracy(model, data.validation),
        validation_count=len(data.validation),
        extraction_rate=data.extraction_rate,
    )


def _seed(config: RetrainConfig) -> int:
    """--random_seed, or a new one; logged either way so any run can be repeated."""
    seed = config.train.random_seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    logging.info("Random seed: %d (pass --random_seed=%d to repeat this run)", seed, seed)
    return seed


def check_output_locations(config: RetrainConfig) -> None:
    """Raises UserError unless every output location can be written (fails fast).

    Not the bottleneck cache: a cache that cannot be written (read-only, another
    team's) is used as it is, with a warning (see cache.fill).
    """
    exports.check_locations(config.output)
    exports.check_requirements(config.output)
    if config.report_dir:
        from retrain.evaluation import report

        report.check_available()
        exports.check_folder(config.report_dir, "evaluation report")


def _train(config: RetrainConfig, data: modes.TrainingData, class_count: int, seed: int,
           on_intermediate) -> trainer.TrainResult:
    """The final layer, trained on data (training.trainer); Ctrl-C says what was kept."""
    out = config.output
    if out.summaries_dir:
        summaries.prepare(out.summaries_dir)
    try:
        return trainer.train(
            examples=data.examples,
            validation=data.validation,
            testing=data.testing,
            class_count=class_count,
            train_config=config.train,
            seed=seed,
            summaries_dir=out.summaries_dir,
            intermediate_store_frequency=out.intermediate_store_frequency,
            on_intermediate=on_intermediate,
        )
    except KeyboardInterrupt as e:
        raise Interrupted(
            "Interrupted during training; the output graph and labels are untouched and the bottleneck "
            f"cache in {config.bottleneck_dir} is complete, so a rerun starts training at once."
        ) from e


def _write_final_summaries(config: RetrainConfig, model: TrainedModel, data: modes.TrainingData) -> None:
    """TensorBoard's graph of the model, and the validation set's confusion matrix and PR curves."""
    summaries_dir = config.output.summaries_dir
    if not summaries_dir:
        return
    summaries.write_graph(summaries_dir, frozen_graph.structure_of(model))
    if len(data.validation):
        step = config.train.how_many_training_steps - 1
        summaries.write_evaluation(summaries_dir, step, model.labels, model.scores(data.validation),
                                   data.validation.labels)


def _warn_about_failed(failed_images: list[tuple[str, str]]) -> None:
    if failed_images:
        logging.warning("Skipped %d file(s) that are not readable images:", len(failed_images))
        for _, reason in failed_images:
            logging.warning("  %s", reason)

