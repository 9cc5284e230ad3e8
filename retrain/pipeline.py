"""One whole retrain run: image lists -> bottlenecks -> training -> exports.

``run(config)`` is what the ``retrain`` command does, callable from Python without
absl flags. It logs progress as retrain.py did and returns a RetrainResult; problems
with the user's input raise UserError before any long work starts where possible.
"""

import dataclasses
import os
import random
import shutil

import tensorflow as tf
from absl import logging

from retrain import (
    atomic,
    batching,
    bottlenecks,
    distortions,
    export,
    hub_module,
    image_lists,
    images,
    module_inputs,
    train,
)
from retrain.config import RetrainConfig
from retrain.errors import Interrupted, UserError


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
    """

    labels: list[str]
    test_accuracy: float | None
    test_count: int
    misclassified: list[tuple[str, str]]
    failed_images: list[tuple[str, str]]
    seed: int


def check_output_locations(config: RetrainConfig) -> None:
    """Raises UserError unless every output location can be written (fails fast)."""
    out = config.output
    files = [out.output_graph, out.output_labels, out.checkpoint_path]
    if out.saved_model_dir:
        files.append(out.saved_model_dir.rstrip("/"))
    folders = [config.bottleneck_dir, out.summaries_dir]
    if out.intermediate_store_frequency > 0:
        folders.append(out.intermediate_output_graphs_dir)
    for path in files[:3]:
        if path and os.path.isdir(path):
            raise UserError(f"{path} is a directory; give a file name for it.")
    checks = [path for path in files if path] + [os.path.join(d, "x") for d in folders if d]
    for path in checks:
        try:
            atomic.check_writable(path)
        except OSError as e:
            raise UserError(f"Cannot write to {os.path.dirname(path) or '.'}: {e.strerror or e}") from e


def prepare_summaries_dir(summaries_dir: str) -> None:
    """Removes the train/ and validation/ event folders of an earlier run, nothing else."""
    for name in ("train", "validation"):
        shutil.rmtree(os.path.join(summaries_dir, name), ignore_errors=True)
    os.makedirs(summaries_dir, exist_ok=True)


def _bottlenecks(config: RetrainConfig, lists: dict, extractor, seed: int):
    """The bottleneck sets for training, and what was skipped.

    Without distortions every set comes from the cache. With them, validation and
    testing still do (undistorted, as in retrain.py); training comes from cached
    distorted copies (--distorted_copies) or from batches distorted at every step.

    Returns:
      (sets, failed images [(path, reason)], a DistortedBatches for train() or None).
    """
    height, width = extractor.height, extractor.width
    distort = config.distortions

    def extract(batch):
        return extractor.extract(tf.convert_to_tensor(batch)).numpy()

    common = dict(
        image_dir=config.image_dir,
        bottleneck_dir=config.bottleneck_dir,
        module_handle=config.tfhub_module,
    )
    cache = bottlenecks.load_or_compute(
        image_lists=lists,
        **common,
        dim=extractor.feature_dim,
        decode=module_inputs.module_input_decoder(height, width, config.bottleneck_batch_size),
        extract=extract,
        categories=("testing", "validation") if distort.enabled else image_lists.CATEGORIES,
    )
    sets, failed = dict(cache.sets), list(cache.failed_images)
    if not distort.enabled:
        return sets, failed, None
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
            bottleneck_dir=config.bottleneck_dir,
        )
        sets["training"] = copies.sets["training"]
        return sets, failed + copies.failed_images, None
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
    return sets, failed + training_failed, batches


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
    labels = list(lists.keys())

    gpus = tf.config.list_physical_devices("GPU")
    logging.info("TensorFlow runs on %s.", f"{len(gpus)} GPU(s)" if gpus else "the CPU (no GPU found)")
    extractor = hub_module.load_feature_extractor(config.tfhub_module, config.image_size)
    logging.info(
        "Using module %s with image size %dx%d.", config.tfhub_module, extractor.height, extractor.width
    )
    sets, failed_images, batch_source = _bottlenecks(config, lists, extractor, seed)
    training_classes = len(set(sets["training"].labels.tolist())) if batch_source is None else len(batch_source.by_class)
    if training_classes < 2:
        raise UserError(
            f"Only {training_classes} class(es) have training images under {config.image_dir}; "
            "at least two are needed. Add images or lower the testing and validation percentages."
        )

    out = config.output
    exporter = export.GraphExporter(extractor, len(labels), out.final_tensor_name)

    def store_intermediate(step, weights, biases):
        export.write_checkpoint(out.checkpoint_path, weights, biases)
        path = out.intermediate_output_graphs_dir + "intermediate_" + str(step) + ".pb"
        logging.info("Save intermediate result to : %s", path)
        exporter.write(path, weights, biases)

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
            graph_def=exporter.structure,
        )
    except KeyboardInterrupt as e:
        raise Interrupted(
            "Interrupted during training; the output graph and labels are untouched and the bottleneck "
            f"cache in {config.bottleneck_dir} is complete, so a rerun starts training at once."
        ) from e
    export.write_checkpoint(out.checkpoint_path, result.weights, result.biases)
    if result.test_accuracy is None:
        logging.warning("No test images: final test accuracy is not reported.")
    else:
        logging.info("Final test accuracy = %.1f%% (N=%d)", result.test_accuracy * 100, result.test_count)
    misclassified = [(path, labels[index]) for path, index in result.misclassified]
    if config.print_misclassified_test_images:
        logging.info("=== MISCLASSIFIED TEST IMAGES ===")
        for path, label in misclassified:
            logging.info("%70s  %s", path, label)

    logging.info("Save final result to : %s", out.output_graph)
    exporter.write(out.output_graph, result.weights, result.biases)
    export.write_labels(out.output_labels, labels)
    if out.saved_model_dir:
        export.write_saved_model(out.saved_model_dir, extractor, result.weights, result.biases)
        logging.info("SavedModel written to %s", out.saved_model_dir)
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
    )
