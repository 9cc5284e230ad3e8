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

from absl import flags, logging

from retrain import config as config_lib
from retrain.commands import cache_flags, cli, output_flags, run_summary, training_flags

_D = config_lib.RetrainConfig()
FLAGS = cli.command_flags()
_DATA = cache_flags.DataFlags(FLAGS)

# Each output's flags come from the outputs table: --output_graph, --output_labels,
# --saved_model_dir, --output_tflite and its options, --summaries_dir, ...
_OUTPUTS = output_flags.define(FLAGS, __name__)

_TRAINING = training_flags.TrainingFlags(FLAGS)

_PRINT_MISCLASSIFIED_TEST_IMAGES = flags.DEFINE_boolean(
    "print_misclassified_test_images",
    _D.print_misclassified_test_images,
    "Whether to print out a list of all misclassified test images.",
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
_LOGGING_VERBOSITY = cli.define_logging_verbosity(FLAGS, __name__)


def _config_from_flags() -> config_lib.RetrainConfig:
    data = _DATA.settings()
    return config_lib.RetrainConfig(
        **data,
        **_TRAINING.settings(data["distortions"].distorted_copies),
        print_misclassified_test_images=_PRINT_MISCLASSIFIED_TEST_IMAGES.value,
        report_dir=_REPORT_DIR.value,
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
parse_flags = cli.flags_parser(PROGRAM, FLAGS, sys.modules[__name__],
                               shared=[cache_flags.__name__, training_flags.__name__])


def run() -> None:
    """Console entry point of `retrain`."""
    cli.start(main, parse_flags)


if __name__ == "__main__":
    run()
