"""retrain-doctor: find what is wrong with an image folder before it costs accuracy.

  retrain-doctor --image_dir ~/flower_photos --output_dir /tmp/doctor

examines every image of every set with retrain's own walk, split, module and bottleneck
cache (run before or after retrain, it computes nothing twice): likely label errors
(confident learning on out-of-fold heads), exact and near duplicates (with the labels and
sets of each copy: label conflicts and test images leaked into training), outliers,
shortcuts (a class that image size, aspect, format, file size or mean colour alone
predicts), and the folder itself (small classes, imbalance, tiny or blank images, class
folders named like splits). Prints a summary and writes --output_dir/doctor.json,
index.html (the findings with thumbnails) and exclude.txt (for retrain --exclude_list).
It never moves, renames or deletes a file. Needs pip install "retrain[doctor]".

Exit status: 0 success, 1 failure, 2 bad usage, 130 interrupted.
"""

import sys

from absl import flags, logging

from retrain import config as config_lib
from retrain.commands import cache_flags, cli

_D = config_lib.DoctorConfig()
FLAGS = cli.command_flags()
_DATA = cache_flags.DataFlags(FLAGS)

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", _D.output_dir,
    "Where to write doctor.json, index.html (with thumbnails/) and exclude.txt.", flag_values=FLAGS)
_FOLDS = flags.DEFINE_integer(
    "folds", _D.folds,
    "How many out-of-fold heads give each image's probabilities for the label issues (each trained on the "
    "other folds' cached bottlenecks).", flag_values=FLAGS)
_RANDOM_SEED = flags.DEFINE_integer(
    "random_seed", _D.seed, "Seed of the folds and every random choice: the same folder gives the same findings.",
    flag_values=FLAGS)
_LOGGING_VERBOSITY = cli.define_logging_verbosity(FLAGS, __name__)


def _config_from_flags() -> config_lib.DoctorConfig:
    if _FOLDS.value < 2:
        raise cli.UsageError(f"--folds must be at least 2, not {_FOLDS.value}")
    if not _OUTPUT_DIR.value:
        raise cli.UsageError("--output_dir must name a folder")
    return config_lib.DoctorConfig(run=config_lib.RetrainConfig(**_DATA.settings()), output_dir=_OUTPUT_DIR.value,
                                   folds=_FOLDS.value, seed=_RANDOM_SEED.value)


def main(argv) -> int:
    del argv  # Unused: flags_parser rejects positional arguments.
    logging.set_verbosity(cli.VERBOSITY_LEVELS[_LOGGING_VERBOSITY.value])

    def body():
        config = _config_from_flags()
        from retrain.doctor import label_issues

        label_issues.check_available()  # Before TensorFlow starts: one line, at once.
        cli.import_tensorflow_quietly(verbose=_LOGGING_VERBOSITY.value == "DEBUG")
        from retrain.data import storage
        from retrain.doctor import examine, outputs
        from retrain.errors import UserError

        try:
            storage.check_writable(config.output_dir)
        except OSError as e:
            raise UserError(f"Cannot write to --output_dir {config.output_dir}: {e.strerror or e}") from e
        diagnosis = examine.examine(config)
        written = outputs.write(diagnosis, config.output_dir)
        print("\n".join(outputs.summary_lines(diagnosis)))
        print("Written: " + ", ".join(written.values()), flush=True)
        return cli.EXIT_OK

    return cli.run_guarded("retrain-doctor", body)


PROGRAM = "retrain-doctor"
parse_flags = cli.flags_parser(PROGRAM, FLAGS, sys.modules[__name__], shared=[cache_flags.__name__])


def run() -> None:
    """Console entry point of `retrain-doctor`."""
    cli.start(main, parse_flags)


if __name__ == "__main__":
    run()
