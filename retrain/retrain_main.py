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

from absl import app, flags, logging

from retrain import cache_flags, cli, memory
from retrain import config as config_lib

_D = config_lib.RetrainConfig()

_OUTPUT_GRAPH = flags.DEFINE_string(
    "output_graph", _D.output.output_graph, "Where to save the trained graph."
)
_INTERMEDIATE_OUTPUT_GRAPHS_DIR = flags.DEFINE_string(
    "intermediate_output_graphs_dir",
    _D.output.intermediate_output_graphs_dir,
    "Where to save the intermediate graphs (the file name is appended as is: keep the trailing '/').",
)
_INTERMEDIATE_STORE_FREQUENCY = flags.DEFINE_integer(
    "intermediate_store_frequency",
    _D.output.intermediate_store_frequency,
    "How many steps to store intermediate graph. If \"0\" then will not store.",
)
_OUTPUT_LABELS = flags.DEFINE_string(
    "output_labels", _D.output.output_labels, "Where to save the trained graph's labels."
)
_SUMMARIES_DIR = flags.DEFINE_string(
    "summaries_dir",
    _D.output.summaries_dir,
    "Where to save summary logs for TensorBoard. Its train/ and validation/ sub-folders are "
    "replaced; nothing else in it is touched.",
)
_HOW_MANY_TRAINING_STEPS = flags.DEFINE_integer(
    "how_many_training_steps", _D.train.how_many_training_steps, "How many training steps to run before ending."
)
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", _D.train.learning_rate, "How large a learning rate to use when training."
)
_EVAL_STEP_INTERVAL = flags.DEFINE_integer(
    "eval_step_interval", _D.train.eval_step_interval, "How often to evaluate the training results."
)
_TRAIN_BATCH_SIZE = flags.DEFINE_integer(
    "train_batch_size",
    _D.train.train_batch_size,
    "How many images to train on at a time. -1 uses the whole training set at every step.",
)
_TEST_BATCH_SIZE = flags.DEFINE_integer(
    "test_batch_size",
    _D.train.test_batch_size,
    "How many images to test on. This test set is only used once, to evaluate the final "
    "accuracy of the model after training completes. A value of -1 causes the entire test "
    "set to be used, which leads to more stable results across runs.",
)
_VALIDATION_BATCH_SIZE = flags.DEFINE_integer(
    "validation_batch_size",
    _D.train.validation_batch_size,
    "How many images to use in an evaluation batch. This validation set is used much more "
    "often than the test set, and is an early indicator of how accurate the model is during "
    "training. A value of -1 causes the entire validation set to be used, which leads to "
    "more stable results across training iterations, but may be slower on large training sets.",
)
_PRINT_MISCLASSIFIED_TEST_IMAGES = flags.DEFINE_boolean(
    "print_misclassified_test_images",
    _D.print_misclassified_test_images,
    "Whether to print out a list of all misclassified test images.",
)
_FINAL_TENSOR_NAME = flags.DEFINE_string(
    "final_tensor_name",
    _D.output.final_tensor_name,
    "The name of the output classification layer in the retrained graph.",
)
_SAVED_MODEL_DIR = flags.DEFINE_string(
    "saved_model_dir",
    _D.output.saved_model_dir,
    "Where to also save the model as a SavedModel, for TF Serving and Python. Signature "
    "serving_default: input 'image' (as the frozen graph's), output 'prediction'; signature "
    "serving_bytes: input 'images', encoded JPEG/PNG/GIF/BMP files, outputs 'scores', "
    "'top_labels', 'top_scores'. Not saved if empty; an existing folder is replaced.",
)
_OUTPUT_TFLITE = flags.DEFINE_string(
    "output_tflite",
    _D.output.output_tflite,
    "Where to also save the model as TFLite (.tflite, for Android, iOS and the edge): input "
    "'image' float32 [batch, height, width, 3] RGB in [0, 1] as for the frozen graph, output "
    "'scores'. It is then run on the test images and its agreement with the frozen graph logged. "
    "Not saved if empty.",
)
_TFLITE_QUANTIZATION = flags.DEFINE_enum(
    "tflite_quantization",
    _D.output.tflite_quantization,
    list(config_lib.TFLITE_QUANTIZATIONS),
    "How --output_tflite stores the model: float (as trained), float16 (half the size), or int8 "
    "(full-integer quantization calibrated on training images: a quarter of the size, fast on phones).",
)
_TFLITE_IO_TYPE = flags.DEFINE_enum(
    "tflite_io_type",
    _D.output.tflite_io_type,
    list(config_lib.TFLITE_IO_TYPES),
    "With --tflite_quantization int8: the type of the model's input and output. float32 (default) "
    "needs no scale or zero point from callers; uint8 / int8 take quantized pixels.",
)
_TFLITE_REPRESENTATIVE_IMAGES = flags.DEFINE_integer(
    "tflite_representative_images",
    _D.output.tflite_representative_images,
    "With --tflite_quantization int8: how many training images (chosen with the random seed) "
    "calibrate the quantization ranges. More can help when int8 agrees poorly with the frozen graph.",
)
_UNKNOWN_THRESHOLD = flags.DEFINE_string(
    "unknown_threshold",
    "auto",
    "The calibrated top score below which the model answers 'unknown' (label-image --unknown, "
    "the SavedModel's and TFLite model's outputs). auto: chosen on the validation images, the "
    "lowest score from which the answered images reach --unknown_target_precision accuracy, "
    "and at least the score that answers that share of them. Or a number in [0, 1].",
)
_UNKNOWN_TARGET_PRECISION = flags.DEFINE_float(
    "unknown_target_precision",
    _D.unknown_target_precision,
    "With --unknown_threshold auto: the accuracy (0-1) the images answered should reach on validation.",
)
_REPORT_DIR = flags.DEFINE_string(
    "report_dir",
    _D.report_dir,
    "Also write an HTML evaluation report of the test images here (index.html with a confusion "
    "matrix, per-class table, reliability diagram, accuracy-coverage curve and the misclassified "
    "images). Needs pip install \"retrain[report]\". Not written if empty.",
)
_LOGGING_VERBOSITY = flags.DEFINE_enum(
    "logging_verbosity",
    "INFO",
    list(config_lib.LOGGING_VERBOSITIES),
    "How much logging output should be produced. DEBUG also shows tracebacks of errors.",
)
_CHECKPOINT_PATH = flags.DEFINE_string(
    "checkpoint_path", _D.output.checkpoint_path, "Where to save the checkpoint of the trained layer."
)
_RANDOM_SEED = flags.DEFINE_integer(
    "random_seed",
    _D.train.random_seed,
    "Seed for the initial weights and the sampling of training, validation and test "
    "batches. Unset: a new seed each run, printed in the log so the run can be repeated.",
)


def _check_flags() -> None:
    """Raises cli.UsageError, naming the flag, for values that cannot work."""
    positive = (_HOW_MANY_TRAINING_STEPS, _EVAL_STEP_INTERVAL)
    for holder in positive:
        if holder.value <= 0:
            raise cli.UsageError(f"--{holder.name} must be positive, not {holder.value}")
    for holder in (_TRAIN_BATCH_SIZE, _VALIDATION_BATCH_SIZE, _TEST_BATCH_SIZE):
        if holder.value == 0 or holder.value < -1:
            raise cli.UsageError(f"--{holder.name} must be positive or -1 (all images), not {holder.value}")
    if _INTERMEDIATE_STORE_FREQUENCY.value < 0:
        raise cli.UsageError(f"--intermediate_store_frequency must be 0 or positive, not {_INTERMEDIATE_STORE_FREQUENCY.value}")
    if not _LEARNING_RATE.value > 0:
        raise cli.UsageError(f"--learning_rate must be positive, not {_LEARNING_RATE.value}")
    if not _FINAL_TENSOR_NAME.value:
        raise cli.UsageError("--final_tensor_name must not be empty")
    _unknown_threshold()
    if not 0.0 < _UNKNOWN_TARGET_PRECISION.value <= 1.0:
        raise cli.UsageError(
            f"--unknown_target_precision must be in (0, 1], not {_UNKNOWN_TARGET_PRECISION.value}"
        )
    if _TFLITE_IO_TYPE.value != "float32" and _TFLITE_QUANTIZATION.value != "int8":
        raise cli.UsageError("--tflite_io_type uint8 or int8 needs --tflite_quantization int8")
    if _TFLITE_REPRESENTATIVE_IMAGES.value <= 0:
        raise cli.UsageError(
            f"--tflite_representative_images must be positive, not {_TFLITE_REPRESENTATIVE_IMAGES.value}"
        )


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
        **cache_flags.settings(),
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
        output=config_lib.OutputConfig(
            output_graph=_OUTPUT_GRAPH.value,
            output_labels=_OUTPUT_LABELS.value,
            intermediate_output_graphs_dir=_INTERMEDIATE_OUTPUT_GRAPHS_DIR.value,
            intermediate_store_frequency=_INTERMEDIATE_STORE_FREQUENCY.value,
            summaries_dir=_SUMMARIES_DIR.value,
            checkpoint_path=_CHECKPOINT_PATH.value,
            saved_model_dir=_SAVED_MODEL_DIR.value,
            final_tensor_name=_FINAL_TENSOR_NAME.value,
            output_tflite=_OUTPUT_TFLITE.value,
            tflite_quantization=_TFLITE_QUANTIZATION.value,
            tflite_io_type=_TFLITE_IO_TYPE.value,
            tflite_representative_images=_TFLITE_REPRESENTATIVE_IMAGES.value,
        ),
    )


def main(argv) -> int:
    del argv  # Unused: flags_parser rejects positional arguments.
    logging.set_verbosity(cli.VERBOSITY_LEVELS[_LOGGING_VERBOSITY.value])

    def body():
        config = _config_from_flags()
        cli.import_tensorflow_quietly(verbose=_LOGGING_VERBOSITY.value == "DEBUG")
        from retrain import pipeline  # Imports TensorFlow: after the flags are known good.

        pipeline.run(config)
        return cli.EXIT_OK

    return cli.run_guarded("retrain", body)


def run() -> None:
    """Console entry point of `retrain`."""
    memory.limit_allocator_arenas()  # Before TensorFlow starts its threads.
    cli.quiet_tensorflow()
    import sys

    app.run(main, flags_parser=cli.flags_parser("retrain", sys.modules[__name__], shared=[cache_flags]))


if __name__ == "__main__":
    run()
