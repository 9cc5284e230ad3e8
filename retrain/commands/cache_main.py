"""retrain-cache: fill retrain's bottleneck cache on Apache Beam (DirectRunner, Dataflow, Flink, Spark).

Takes retrain's own flags for the images, the split, the module and the cache, plus
any Apache Beam pipeline option, and writes exactly the cache files retrain would
(only the missing or stale ones); a following `retrain` with the same flags computes
nothing:

  retrain-cache --image_dir gs://bucket/photos --bottleneck_dir gs://bucket/cache \\
      --runner DataflowRunner --project P --region us-central1 --temp_location gs://bucket/tmp
  retrain --image_dir gs://bucket/photos --bottleneck_dir gs://bucket/cache

Without --runner it runs on Beam's DirectRunner, one worker process per core of this
machine. Beam options: --runner, --direct_num_workers, --direct_running_mode, and for
Dataflow --project, --region, --temp_location, --num_workers, --machine_type, ...
Needs pip install "retrain[beam]".

Exit status: 0 success, 1 failure, 2 bad usage, 130 interrupted.
"""

import sys

from absl import logging

from retrain import config as config_lib
from retrain.commands import cache_flags, cli

FLAGS = cli.command_flags()
_DATA = cache_flags.DataFlags(FLAGS)

_LOGGING_VERBOSITY = cli.define_logging_verbosity(FLAGS, __name__)


def main(argv) -> int:
    pipeline_args = list(argv[1:])  # Everything our flags did not take goes to Beam.
    logging.set_verbosity(cli.VERBOSITY_LEVELS[_LOGGING_VERBOSITY.value])

    def body():
        config = config_lib.RetrainConfig(**_DATA.settings())
        if not config.image_dir:
            raise cli.UsageError("--image_dir is required")
        from retrain.cache import beam

        unknown = beam.unknown_pipeline_options(pipeline_args)  # Missing Beam: one line, before TensorFlow.
        if unknown:
            raise cli.UsageError(f"unknown flag(s) for retrain-cache or Apache Beam: {', '.join(unknown)}")
        cli.import_tensorflow_quietly(verbose=_LOGGING_VERBOSITY.value == "DEBUG")
        from retrain.module import hub
        from retrain.training import modes

        if not any(arg.split("=")[0] == "--runner" for arg in pipeline_args):
            pipeline_args.extend(beam.default_pipeline_args())
        # The mode retrain would run with these flags says what of the training images to cache.
        training = modes.for_config(config).training_images(config)
        result = beam.fill_cache(config, pipeline_args, training,
                                 load_extractor=hub.load_for_run, load_module=hub.load_feature_extractor)
        logging.info(
            "%d of %d bottlenecks are cached in %s (%d computed now).",
            result.reused + result.computed, result.entries, config.bottleneck_dir, result.computed,
        )
        if result.failed_images:
            logging.warning("Skipped %d file(s) that are not readable images:", len(result.failed_images))
            for _, reason in result.failed_images:
                logging.warning("  %s", reason)
        return cli.EXIT_OK

    return cli.run_guarded("retrain-cache", body)


PROGRAM = "retrain-cache"
parse_flags = cli.flags_parser(
    PROGRAM, FLAGS, sys.modules[__name__], shared=[cache_flags.__name__], pass_unknown=True
)


def run() -> None:
    """Console entry point of `retrain-cache`."""
    cli.start(main, parse_flags)


if __name__ == "__main__":
    run()
