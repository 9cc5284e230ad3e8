"""retrain: train a new top layer on a TF-Hub image module for your own image classes.

The successor of TensorFlow's retrain.py, with its flags and defaults:

  retrain --image_dir ~/flower_photos

reads one sub-folder of images per class, caches a bottleneck (feature vector) per
image in --bottleneck_dir, trains a softmax layer on them, reports train, validation
and test accuracy, and writes --output_graph (frozen GraphDef: input 'Placeholder',
float32 [None, height, width, 3] RGB in [0, 1]; output --final_tensor_name) and
--output_labels.

Exit status: 0 success, 1 failure, 2 bad usage, 130 interrupted.
"""

import sys

from absl import app, flags, logging

from retrain import config as config_lib
from retrain.commands import cache_flags, cli, output_flags, run_summary
from retrain.runtime import memory

_D = config_lib.RetrainConfig()
FLAGS = cli.command_flags()
_DATA = cache_flags.DataFlags(FLAGS)

# Each output's flags come from the outputs table: --output_graph, --output_labels,
# --saved_model_dir, --output_tflite and its options, --summaries_dir, ...
_OUTPUTS = output_flags.define(FLAGS, __name__)

_HOW_MANY_TRAINING_STEPS = flags.DEFINE_integer(
    "how_many_training_steps", _D.train.how_many_training_steps, "How many training steps to run before ending.",
    flag_values=FLAGS,
)
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", _D.train.learning_rate, "How large a learning rate to use when training.",
    flag_values=FLAGS,
)
_EVAL_STEP_INTERVAL = flags.DEFINE_integer(
    "eval_step_interval", _D.train.eval_step_interval, "How often to evaluate the training results.",
    flag_values=FLAGS,
)
_TRAIN_BATCH_SIZE = flags.DEFINE_integer(
    "train_batch_size",
    _D.train.train_batch_size,
    "How many images to train on at a time. -1 uses the whole training set at every step.",
    flag_values=FLAGS,
)
_TEST_BATCH_SIZE = flags.DEFINE_integer(
    "test_batch_size",
    _D.train.test_batch_size,
    "How many images to test on. This test set is only used once, to evaluate the final "
    "accuracy of the model after training completes. A value of -1 causes the entire test "
    "set to be used, which leads to more stable results across runs.",
    flag_values=FLAGS,
)
_VALIDATION_BATCH_SIZE = flags.DEFINE_integer(
    "validation_batch_size",
    _D.train.validation_batch_size,
    "How many images to use in an evaluation batch. This validation set is used much more "
    "often than the test set, and is an early indicator of how accurate the model is during "
    "training. A value of -1 causes the entire validation set to be used, which leads to "
    "more stable results across training iterations, but may be slower on large training sets.",
    flag_values=FLAGS,
)
_PRINT_MISCLASSIFIED_TEST_IMAGES = flags.DEFINE_boolean(
    "print_misclassified_test_images",
    _D.print_misclassified_test_images,
    "Whether to print out a list of all misclassified test images.",
    flag_values=FLAGS,
)
_UNKNOWN_THRESHOLD = flags.DEFINE_string(
    "unknown_threshold",
    "auto",
    "The calibrated top score below which the model answers 'unknown' (label-image --unknown, "
    "the SavedModel's and TFLite model's outputs). auto: chosen on the validation images, the "
    "lowest score from which the answered images reach --unknown_target_precision accuracy, "
    "and at least the score that answers that share of them. Or a number in [0, 1].",
    flag_values=FLAGS,
)
_UNKNOWN_TARGET_PRECISION = flags.DEFINE_float(
    "unknown_target_precision",
    _D.unknown_target_precision,
    "With --unknown_threshold auto: the accuracy (0-1) the images answered should reach on validation.",
    flag_values=FLAGS,
)
_REPORT_DIR = flags.DEFINE_string(
    "report_dir",
    _D.report_dir,
    "Also write an HTML evaluation report of the test images here (index.html with a confusion "
    "matrix, per-class table, reliability diagram, accuracy-coverage curve and the misclassified "
    "images). Needs pip install \"retrain[report]\". Not written if empty.",
    flag_values=FLAGS,
)
_LOGGING_VERBOSITY = flags.DEFINE_enum(
    "logging_verbosity",
    "INFO",
    list(config_lib.LOGGING_VERBOSITIES),
    "How much logging output should be produced. DEBUG also shows tracebacks of errors.",
    flag_values=FLAGS,
)
_RANDOM_SEED = flags.DEFINE_integer(
    "random_seed",
    _D.train.random_seed,
    "Seed for the initial weights and the sampling of training, validation and test "
    "batches. Unset: a new seed each run, printed in the log so the run can be repeated.",
    flag_values=FLAGS,
)

_F = _D.fine_tune
_FINE_TUNE = flags.DEFINE_boolean(
    "fine_tune", _F.enabled,
    "After the head, train the module too (with the head, on decoded images, batch norm in inference "
    "mode, distortion flags applied live), keeping the epoch that is best on validation, or the head "
    "alone when none beats it. Needs a TF2 module with trainable variables (TF-Hub's reusable "
    "SavedModels); every output then carries the tuned module.",
    flag_values=FLAGS,
)
_FINE_TUNE_EPOCHS = flags.DEFINE_integer(
    "fine_tune_epochs", _F.epochs, "With --fine_tune: passes over the training images.", flag_values=FLAGS)
_FINE_TUNE_LEARNING_RATE = flags.DEFINE_float(
    "fine_tune_learning_rate", _F.learning_rate,
    "With --fine_tune: the peak learning rate of SGD with momentum (module and head).", flag_values=FLAGS)
_FINE_TUNE_SCHEDULE = flags.DEFINE_enum(
    "fine_tune_schedule", _F.schedule, list(config_lib.FINE_TUNE_SCHEDULES),
    "With --fine_tune: cosine (a linear warm-up over the first epoch, then a cosine decay to 0) or constant.",
    flag_values=FLAGS)
_FINE_TUNE_BATCH_SIZE = flags.DEFINE_integer(
    "fine_tune_batch_size", _F.batch_size, "With --fine_tune: images per step.", flag_values=FLAGS)
_FINE_TUNE_MOMENTUM = flags.DEFINE_float(
    "fine_tune_momentum", _F.momentum, "With --fine_tune: SGD's momentum, in [0, 1).", flag_values=FLAGS)
_FINE_TUNE_WEIGHT_DECAY = flags.DEFINE_float(
    "fine_tune_weight_decay", _F.weight_decay,
    "With --fine_tune: L2 weight decay on kernels and weight matrices (not biases or normalisation).",
    flag_values=FLAGS)
_FINE_TUNE_LABEL_SMOOTHING = flags.DEFINE_float(
    "fine_tune_label_smoothing", _F.label_smoothing,
    "With --fine_tune: label smoothing of the cross entropy, in [0, 1).", flag_values=FLAGS)


def _check_flags() -> None:
    """Raises cli.UsageError, naming the flag, for values that cannot work."""
    positive = (_HOW_MANY_TRAINING_STEPS, _EVAL_STEP_INTERVAL)
    for holder in positive:
        if holder.value <= 0:
            raise cli.UsageError(f"--{holder.name} must be positive, not {holder.value}")
    for holder in (_TRAIN_BATCH_SIZE, _VALIDATION_BATCH_SIZE, _TEST_BATCH_SIZE):
        if holder.value == 0 or holder.value < -1:
            raise cli.UsageError(f"--{holder.name} must be positive or -1 (all images), not {holder.value}")
    if not _LEARNING_RATE.value > 0:
        raise cli.UsageError(f"--learning_rate must be positive, not {_LEARNING_RATE.value}")
    _check_fine_tune_flags()
    _unknown_threshold()
    if not 0.0 < _UNKNOWN_TARGET_PRECISION.value <= 1.0:
        raise cli.UsageError(
            f"--unknown_target_precision must be in (0, 1], not {_UNKNOWN_TARGET_PRECISION.value}"
        )


def _check_fine_tune_flags() -> None:
    for holder in (_FINE_TUNE_EPOCHS, _FINE_TUNE_BATCH_SIZE, _FINE_TUNE_LEARNING_RATE):
        if not holder.value > 0:
            raise cli.UsageError(f"--{holder.name} must be positive, not {holder.value}")
    for holder in (_FINE_TUNE_MOMENTUM, _FINE_TUNE_LABEL_SMOOTHING):
        if not 0.0 <= holder.value < 1.0:
            raise cli.UsageError(f"--{holder.name} must be in [0, 1), not {holder.value}")
    if _FINE_TUNE_WEIGHT_DECAY.value < 0:
        raise cli.UsageError(f"--fine_tune_weight_decay must be 0 or positive, not {_FINE_TUNE_WEIGHT_DECAY.value}")
    if _FINE_TUNE.value and _DATA.distorted_copies.value:
        raise cli.UsageError("--distorted_copies does not go with --fine_tune: while the module trains, the "
                             "distortion flags are applied to the images live")


def _unknown_threshold() -> float | None:
    """--unknown_threshold as a number, or None for auto."""
    text = _UNKNOWN_THRESHOLD.value.strip().lower()
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise cli.UsageError(f"--unknown_threshold must be auto or a number in [0, 1], not {_UNKNOWN_THRESHOLD.value}")
    return value


def _config_from_flags() -> config_lib.RetrainConfig:
    _check_flags()
    return config_lib.RetrainConfig(
        **_DATA.settings(),
        print_misclassified_test_images=_PRINT_MISCLASSIFIED_TEST_IMAGES.value,
        unknown_threshold=_unknown_threshold(),
        unknown_target_precision=_UNKNOWN_TARGET_PRECISION.value,
        report_dir=_REPORT_DIR.value,
        train=config_lib.TrainConfig(
            how_many_training_steps=_HOW_MANY_TRAINING_STEPS.value,
            learning_rate=_LEARNING_RATE.value,
            train_batch_size=_TRAIN_BATCH_SIZE.value,
            eval_step_interval=_EVAL_STEP_INTERVAL.value,
            validation_batch_size=_VALIDATION_BATCH_SIZE.value,
            test_batch_size=_TEST_BATCH_SIZE.value,
            random_seed=_RANDOM_SEED.value,
        ),
        fine_tune=config_lib.FineTuneConfig(
            enabled=_FINE_TUNE.value,
            epochs=_FINE_TUNE_EPOCHS.value,
            learning_rate=_FINE_TUNE_LEARNING_RATE.value,
            schedule=_FINE_TUNE_SCHEDULE.value,
            batch_size=_FINE_TUNE_BATCH_SIZE.value,
            momentum=_FINE_TUNE_MOMENTUM.value,
            weight_decay=_FINE_TUNE_WEIGHT_DECAY.value,
            label_smoothing=_FINE_TUNE_LABEL_SMOOTHING.value,
        ),
        output=output_flags.output_config(_OUTPUTS),
    )


def main(argv) -> int:
    del argv  # Unused: flags_parser rejects positional arguments.
    logging.set_verbosity(cli.VERBOSITY_LEVELS[_LOGGING_VERBOSITY.value])

    def body():
        config = _config_from_flags()
        cli.import_tensorflow_quietly(verbose=_LOGGING_VERBOSITY.value == "DEBUG")
        # Imports TensorFlow: after the flags are known good.
        from retrain import pipeline

        result = pipeline.run(config)
        if _LOGGING_VERBOSITY.value in ("DEBUG", "INFO", "WARN"):
            print("\n".join(run_summary.lines(config, result)), flush=True)
        return cli.EXIT_OK

    return cli.run_guarded("retrain", body)


PROGRAM = "retrain"
parse_flags = cli.flags_parser(PROGRAM, FLAGS, sys.modules[__name__], shared=[cache_flags.__name__])


def run() -> None:
    """Console entry point of `retrain`."""
    memory.limit_allocator_arenas()  # Before TensorFlow starts its threads.
    cli.quiet_tensorflow()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
