"""retrain-compare: which module for this image folder? Each one trained and measured on it.

  retrain-compare --image_dir ~/flower_photos --output_dir /tmp/compare \
      --tfhub_module google/efficientnet-v2/TensorFlow2/imagenet21k-b0-feature-vector/1 \
      --tfhub_module https://tfhub.dev/google/imagenet/mobilenet_v3_large_100_224/feature_vector/5

trains a head on each module exactly as `retrain` would with the same flags, on the same
split and random seed, filling the same bottleneck cache (a later `retrain` with the
chosen module computes nothing), then measures each: validation and test accuracy, the
expected calibration error, the exported graph's size and its latency and throughput on
this machine, the module's extraction rate. Prints a table and the recommendation (chosen
on validation accuracy, never test), and writes --output_dir/comparison.json, index.html
(a plot of accuracy against latency) and each module's output_graph.pb and labels.

Exit status: 0 success, 1 failure (or a module that could not be compared), 2 bad usage,
130 interrupted.
"""

import sys

from absl import flags, logging

from retrain import config as config_lib
from retrain.commands import cache_flags, cli, training_flags

_D = config_lib.CompareConfig()
FLAGS = cli.command_flags()
_DATA = cache_flags.DataFlags(FLAGS, several_modules=True)
_TRAINING = training_flags.TrainingFlags(FLAGS)

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", _D.output_dir,
    "Where to write comparison.json, index.html and one folder per module (its output_graph.pb, "
    "output_labels.txt and checkpoint); TensorBoard logs of every module under logs/.",
    flag_values=FLAGS,
)
_FINAL_TENSOR_NAME = flags.DEFINE_string(
    "final_tensor_name", config_lib.OutputConfig().final_tensor_name,
    "The name of the output classification layer in each module's graph.", flag_values=FLAGS,
)
_LATENCY_BATCH_SIZE = flags.DEFINE_integer(
    "latency_batch_size", _D.latency_batch_size,
    "Images per run when measuring each exported graph's throughput (images/s); its latency is "
    "measured on one image at a time.", flag_values=FLAGS,
)
_LOGGING_VERBOSITY = cli.define_logging_verbosity(FLAGS, __name__)


def _config_from_flags() -> config_lib.CompareConfig:
    if _LATENCY_BATCH_SIZE.value <= 0:
        raise cli.UsageError(f"--latency_batch_size must be positive, not {_LATENCY_BATCH_SIZE.value}")
    if not _OUTPUT_DIR.value:
        raise cli.UsageError("--output_dir must name a folder")
    data = _DATA.settings()
    choices = _DATA.module_choices()
    cache_dirs = {choice.tfhub_cache_dir for choice in choices}
    run = config_lib.RetrainConfig(
        **data,
        **_TRAINING.settings(data["distortions"].distorted_copies),
        tfhub_cache_dir=cache_dirs.pop() if len(cache_dirs) == 1 else "",
        output=config_lib.OutputConfig(final_tensor_name=_FINAL_TENSOR_NAME.value),
    )
    return config_lib.CompareConfig(
        modules=tuple(choice.tfhub_module for choice in choices), run=run, output_dir=_OUTPUT_DIR.value,
        latency_batch_size=_LATENCY_BATCH_SIZE.value,
    )


def main(argv) -> int:
    del argv  # Unused: flags_parser rejects positional arguments.
    logging.set_verbosity(cli.VERBOSITY_LEVELS[_LOGGING_VERBOSITY.value])

    def body():
        config = _config_from_flags()
        cli.import_tensorflow_quietly(verbose=_LOGGING_VERBOSITY.value == "DEBUG")
        # Imports TensorFlow: after the flags are known good.
        from retrain.comparison import outputs, runs

        comparison = runs.compare(config, on_result=outputs.write_json)
        json_path = outputs.write_json(comparison)
        page = outputs.write_page(comparison)
        print("\n".join(outputs.table_lines(comparison)))
        print(f"Written: {json_path}" + (f", {page}" if page else ""), flush=True)
        failed = [result.module for result in comparison.modules if result.error]
        return cli.EXIT_FAILURE if failed else cli.EXIT_OK

    return cli.run_guarded("retrain-compare", body)


PROGRAM = "retrain-compare"
parse_flags = cli.flags_parser(PROGRAM, FLAGS, sys.modules[__name__],
                               shared=[cache_flags.__name__, training_flags.__name__])


def run() -> None:
    """Console entry point of `retrain-compare`."""
    cli.start(main, parse_flags)


if __name__ == "__main__":
    run()
