"""label-image: classify images with a graph trained by retrain, or check it on a labelled folder.

The successor of TensorFlow's label_image.py, with its flags:

  label-image --graph /tmp/output_graph.pb --labels /tmp/output_labels.txt --image x.jpg

prints the top 5 labels and scores of x.jpg, one `label score` per line, best first.
--image may be repeated and may name folders (walked recursively); more file names
may follow the flags. --output_format json or csv gives machine-readable results.

  label-image --graph G --labels L --image_dir DIR --evaluate [--min_accuracy 0.9]

classifies every image under DIR/<class>/ and reports per-label hit rates, precision,
recall, F1, the confusion matrix and a suggested rejection threshold; with
--min_accuracy it fails when the accuracy is below it (a CI gate).

Exit status: 0 ok; 1 a failure (a file that could not be classified, a missing or
mismatched graph or labels file, accuracy below --min_accuracy); 2 bad usage.
"""

import csv
import json
import sys

import numpy as np
from absl import flags, logging

from retrain import config as config_lib
from retrain.commands import cli
from retrain.data import storage

_D = config_lib.LabelImageConfig()
FLAGS = cli.command_flags()
OUTPUT_FORMATS = ("text", "json", "csv")

_GRAPH = flags.DEFINE_string(
    "graph",
    "",
    "Model to be executed: a frozen GraphDef (.pb), a SavedModel folder or a TFLite model "
    "(.tflite), told apart by their content.",
    flag_values=FLAGS,
)
_SIGNATURE = flags.DEFINE_enum(
    "signature",
    _D.signature,
    ["serving_default", "serving_bytes"],
    "For a SavedModel: serving_default takes pixels prepared here; serving_bytes is sent the "
    "image files and decodes them inside the model (as a server would be sent them).",
    flag_values=FLAGS,
)
_UNKNOWN = flags.DEFINE_boolean(
    "unknown",
    _D.unknown,
    "Answer 'unknown <score>' first when the calibrated top score is below the threshold the "
    "model was trained with (models from this version of retrain carry one).",
    flag_values=FLAGS,
)
_REPORT_DIR = flags.DEFINE_string(
    "report_dir",
    _D.report_dir,
    "With --evaluate: also write an HTML report here (index.html: confusion matrix, per-class "
    "table, reliability diagram, accuracy-coverage curve, misclassified images as thumbnails). "
    "Needs pip install \"retrain[report]\".",
    flag_values=FLAGS,
)
_EXCLUDE_LIST = flags.DEFINE_string(
    "exclude_list",
    _D.exclude_list,
    "With --evaluate: a file listing images of --image_dir to leave out, one relative path a line "
    "(retrain-doctor's exclude.txt), as retrain --exclude_list leaves them out of training.",
    flag_values=FLAGS,
)
_UNKNOWN_THRESHOLD = flags.DEFINE_float(
    "unknown_threshold",
    _D.unknown_threshold,
    "Answer 'unknown' below this (calibrated) top score, instead of the model's own threshold; implies --unknown.",
    flag_values=FLAGS,
)
_ALLOW_UNSAFE_OPS = flags.DEFINE_boolean(
    "allow_unsafe_ops",
    _D.allow_unsafe_ops,
    "Run the model even when it holds operations that can reach outside it (files, network, "
    "processes): a model's operations are read before it is loaded, and refused unless they only "
    "compute on tensors. Only for models you trust: TensorFlow runs them with your permissions, "
    "and this is no sandbox.",
    flag_values=FLAGS,
)
_LABELS = flags.DEFINE_string(
    "labels", "",
    "Name of file containing labels, one per line. Needed for a frozen graph (.pb); a SavedModel or .tflite "
    "model written by retrain carries its labels.",
    flag_values=FLAGS,
)
_IMAGE = flags.DEFINE_multi_string(
    "image", [], "Image to be processed; repeat it, or name a folder to classify every image in it.",
    flag_values=FLAGS,
)
_IMAGE_DIR = flags.DEFINE_string(
    "image_dir", "", "A folder with one sub-folder of images per class, named as for retrain.",
    flag_values=FLAGS,
)
_EVALUATE = flags.DEFINE_boolean(
    "evaluate", False, "Check the graph on --image_dir, whose folder names give the true labels.",
    flag_values=FLAGS,
)
_MIN_ACCURACY = flags.DEFINE_float(
    "min_accuracy", None, "With --evaluate: exit with status 1 when the accuracy (0..1) is below this.",
    flag_values=FLAGS,
)
_INPUT_LAYER = flags.DEFINE_string("input_layer", _D.input_layer, "Name of input layer.", flag_values=FLAGS)
_OUTPUT_LAYER = flags.DEFINE_string("output_layer", _D.output_layer, "Name of output layer.", flag_values=FLAGS)
_INPUT_HEIGHT = flags.DEFINE_integer(
    "input_height", None, "Input height (default: the graph's input height when fixed, else 299).",
    flag_values=FLAGS,
)
_INPUT_WIDTH = flags.DEFINE_integer(
    "input_width", None, "Input width (default: the graph's input width when fixed, else 299).",
    flag_values=FLAGS,
)
_INPUT_MEAN = flags.DEFINE_float("input_mean", _D.input_mean, "Subtracted from each pixel value (0-255).", flag_values=FLAGS)
_INPUT_STD = flags.DEFINE_float("input_std", _D.input_std, "Pixel values are divided by this after the mean.", flag_values=FLAGS)
_TOP_K = flags.DEFINE_integer("top_k", _D.top_k, "How many labels to show per image, best first.", flag_values=FLAGS)
_OUTPUT_FORMAT = flags.DEFINE_enum(
    "output_format", _D.output_format, list(OUTPUT_FORMATS),
    "text: `label score` lines; json: one document; csv: one row per image.",
    flag_values=FLAGS,
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _D.batch_size, "Images per forward pass.", flag_values=FLAGS)
_LOGGING_VERBOSITY = cli.define_logging_verbosity(FLAGS, __name__, "WARN")


def _config_from_flags(extra_images: list[str]) -> config_lib.LabelImageConfig:
    _check_flags(extra_images)
    return config_lib.LabelImageConfig(
        graph=_GRAPH.value,
        labels=_LABELS.value,
        images=tuple(_IMAGE.value) + tuple(extra_images),
        image_dir=_IMAGE_DIR.value,
        evaluate=_EVALUATE.value,
        min_accuracy=_MIN_ACCURACY.value,
        input_height=_INPUT_HEIGHT.value,
        input_width=_INPUT_WIDTH.value,
        input_layer=_INPUT_LAYER.value,
        output_layer=_OUTPUT_LAYER.value,
        input_mean=_INPUT_MEAN.value,
        input_std=_INPUT_STD.value,
        top_k=_TOP_K.value,
        batch_size=_BATCH_SIZE.value,
        output_format=_OUTPUT_FORMAT.value,
        signature=_SIGNATURE.value,
        unknown=_UNKNOWN.value or _UNKNOWN_THRESHOLD.value is not None,
        unknown_threshold=_UNKNOWN_THRESHOLD.value,
        report_dir=_REPORT_DIR.value,
        allow_unsafe_ops=_ALLOW_UNSAFE_OPS.value,
        exclude_list=_EXCLUDE_LIST.value,
    )


def _check_flags(extra_images: list[str]) -> None:
    if not _GRAPH.value:
        raise cli.UsageError("--graph is required")
    if not _LABELS.value and _GRAPH.value.lower().endswith(".pb"):
        raise cli.UsageError("--labels is required with a frozen graph (.pb); SavedModels and .tflite "
                             "models written by retrain carry their labels")
    if _EVALUATE.value and not _IMAGE_DIR.value:
        raise cli.UsageError("--evaluate needs --image_dir")
    if _REPORT_DIR.value and not _EVALUATE.value:
        raise cli.UsageError("--report_dir needs --evaluate")
    if _EXCLUDE_LIST.value and not _EVALUATE.value:
        raise cli.UsageError("--exclude_list needs --evaluate")
    if _MIN_ACCURACY.value is not None:
        if not _EVALUATE.value:
            raise cli.UsageError("--min_accuracy needs --evaluate")
        if not 0.0 <= _MIN_ACCURACY.value <= 1.0:
            raise cli.UsageError(f"--min_accuracy must be between 0 and 1, not {_MIN_ACCURACY.value}")
    if not (_IMAGE.value or extra_images or _IMAGE_DIR.value):
        raise cli.UsageError("name images with --image (files or folders) or --image_dir")
    if _TOP_K.value <= 0 or _BATCH_SIZE.value <= 0:
        raise cli.UsageError("--top_k and --batch_size must be positive")
    if _UNKNOWN_THRESHOLD.value is not None and not 0.0 <= _UNKNOWN_THRESHOLD.value <= 1.0:
        raise cli.UsageError(f"--unknown_threshold must be between 0 and 1, not {_UNKNOWN_THRESHOLD.value}")
    if _INPUT_STD.value == 0:
        raise cli.UsageError("--input_std must not be 0")
    for holder in (_INPUT_HEIGHT, _INPUT_WIDTH):
        if holder.value is not None and holder.value <= 0:
            raise cli.UsageError(f"--{holder.name} must be positive, not {holder.value}")


def _text_report(evaluation) -> str:
    lines = ["", f"{'label':<24} {'count':>6} {'hit rate':>9} {'precision':>9} {'recall':>7} {'f1':>6} "
                 f"{'mean score hits':>16} {'mean score misses':>18}"]

    def fmt(value, width, digits=3):
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    for label, stats in evaluation.per_label.items():
        lines.append(
            f"{label:<24} {stats.count:>6} {fmt(stats.hit_rate, 9)} {fmt(stats.precision, 9)} "
            f"{fmt(stats.recall, 7)} {fmt(stats.f1, 6)} {fmt(stats.mean_score_hits, 16)} "
            f"{fmt(stats.mean_score_misses, 18)}"
        )
    total = sum(s.count for s in evaluation.per_label.values())
    lines += ["", f"Accuracy: {evaluation.accuracy:.4f} ({total} images)", "",
              "Confusion matrix (rows: true label, columns: predicted, in label order):"]
    width = max(len(str(v)) for row in evaluation.confusion_matrix for v in row) + 1
    for label, row in zip(evaluation.labels, evaluation.confusion_matrix):
        lines.append(f"{label:<24}" + "".join(f"{v:>{width}}" for v in row))
    if evaluation.unknown_threshold is not None:
        lines.append(
            f"\nAt the unknown threshold {evaluation.unknown_threshold:.4f}: coverage {fmt(evaluation.coverage, 0)} "
            f"(share answered), accuracy on those {fmt(evaluation.covered_accuracy, 0)}"
        )
        lines.append(f"{'label':<24} {'coverage':>9} {'accuracy':>9}")
        for label, stats in evaluation.per_label.items():
            lines.append(f"{label:<24} {fmt(stats.coverage, 9)} {fmt(stats.covered_accuracy, 9)}")
    if evaluation.suggested_threshold is not None:
        lines.append(
            f"\nSuggested score threshold: {evaluation.suggested_threshold:.4f} (mean top score of misses "
            f"{evaluation.mean_score_misses:.4f}, of hits {evaluation.mean_score_hits:.4f}); answer "
            "'not sure' below it."
        )
    else:
        lines.append("\nSuggested score threshold: none (needs both hits and misses).")
    return "\n".join(lines)


class _StreamPrinter:
    """Prints each image's result as it comes, in text or csv (json waits for the end)."""

    def __init__(self, config: config_lib.LabelImageConfig, labels: list[str], many: bool, unknown: bool):
        self.config = config
        self.labels = labels
        self.many = many
        self.unknown = unknown
        self.writer = csv.writer(sys.stdout) if config.output_format == "csv" else None
        if self.writer:
            header = ["path"] + (["true_label", "correct"] if config.evaluate else [])
            header += ["unknown", "calibrated_score"] if unknown else []
            for rank in range(1, min(config.top_k, len(labels)) + 1):
                header += [f"label_{rank}", f"score_{rank}"]
            self.writer.writerow(header)

    def image(self, result) -> None:
        ranked = result.ranked(self.labels, self.config.top_k)
        correct = ranked[0][0] == result.true_label
        if self.config.output_format == "text":
            if self.many:
                true_label = f" (true label: {result.true_label})" if self.config.evaluate else ""
                print(f"== {result.path}{true_label}")
            if result.unknown:
                print("unknown", np.float32(result.confidence))
            for label, score in ranked:
                print(label, score)  # As label_image.py: numpy's shortest float32 text.
            if self.config.evaluate and not correct:
                print(f"WARNING: top label '{ranked[0][0]}' is wrong, expected '{result.true_label}'")
        elif self.writer:
            row = [result.path] + ([result.true_label, correct] if self.config.evaluate else [])
            row += [result.unknown, f"{result.confidence:.6g}"] if self.unknown else []
            for label, score in ranked:
                row += [label, f"{float(score):.6g}"]
            self.writer.writerow(row)


def _record(result, config: config_lib.LabelImageConfig, labels: list[str], unknown: bool) -> dict:
    """One image of the JSON document."""
    ranked = result.ranked(labels, config.top_k)
    record = {"path": result.path, "predictions": [{"label": l, "score": float(s)} for l, s in ranked]}
    if unknown:
        record.update(unknown=result.unknown, calibrated_score=result.confidence)
    if config.evaluate:
        record.update(true_label=result.true_label, correct=ranked[0][0] == result.true_label)
    return record


def classify_and_print(config: config_lib.LabelImageConfig) -> int:
    """Classifies (or evaluates) as configured, prints the results; returns the exit status."""
    from retrain import label_image

    if config.report_dir:
        from retrain.evaluation import report

        report.check_available()  # Before the long work.
    job = label_image.start(config)
    labels = job.model.labels
    for folder in job.skipped_folders:
        print(f"label-image: warning: folder '{folder}' is not a label of this graph; skipped", file=sys.stderr)
    if config.exclude_list:
        print(f"label-image: Left out {job.left_out} images listed in {config.exclude_list}.", file=sys.stderr)
    failures = list(job.missing)
    for _, error in failures:
        print(f"label-image: error: {error}", file=sys.stderr)

    unknown = job.model.unknown_threshold is not None
    printer = _StreamPrinter(config, labels, many=len(job.paths) > 1, unknown=unknown)
    results, records = [], []
    for result in job.results(show_progress=None):
        if result.error is not None:
            print(f"label-image: error: {result.error}", file=sys.stderr)
            failures.append((result.path, result.error))
            continue
        results.append(result)
        records.append(_record(result, config, labels, unknown))
        printer.image(result)

    document = {"images": records, "failed": [{"path": p, "error": e} for p, e in failures]}
    status = cli.EXIT_FAILURE if failures else cli.EXIT_OK
    if config.evaluate and results:
        report = label_image.evaluation_of(job.model, results)
        document.update(report.to_json())
        held_out, note = label_image.held_out_of(job.model, results, config.image_dir)
        document["held_out"] = held_out.to_json() if held_out else None
        if config.report_dir:
            path = label_image.write_report(job.model, results, config)
            print(f"label-image: report written to {path}", file=sys.stderr)
        if config.output_format != "json":
            print(_text_report(report), file=sys.stdout if config.output_format == "text" else sys.stderr)
        print(f"label-image: {note}", file=sys.stderr)
        if config.min_accuracy is not None:
            verdict = "is below" if report.accuracy < config.min_accuracy else "meets"
            print(f"label-image: accuracy {report.accuracy:.4f} {verdict} --min_accuracy {config.min_accuracy}",
                  file=sys.stderr)
            if report.accuracy < config.min_accuracy:
                status = cli.EXIT_FAILURE
    if config.output_format == "json":
        json.dump(document, sys.stdout, indent=2)
        print()
    if failures:
        print(f"label-image: {len(failures)} file(s) could not be classified.", file=sys.stderr)
    return status


def main(argv) -> int:
    extra_images = list(argv[1:])  # File names after the flags (a shell glob) are images too.
    logging.set_verbosity(cli.VERBOSITY_LEVELS[_LOGGING_VERBOSITY.value])

    def body():
        config = _config_from_flags(extra_images)
        # Only a SavedModel (a folder) may hold Keras objects that need Keras to load.
        might_hold_keras = not storage.is_local(config.graph) or storage.isdir(config.graph)
        cli.import_tensorflow_quietly(verbose=_LOGGING_VERBOSITY.value == "DEBUG", without_keras=not might_hold_keras)
        return classify_and_print(config)

    return cli.run_guarded("label-image", body)


PROGRAM = "label-image"
parse_flags = cli.flags_parser(PROGRAM, FLAGS, sys.modules[__name__], allow_positional=True)


def run() -> None:
    """Console entry point of `label-image`."""
    cli.start(main, parse_flags, limit_arenas=False)


if __name__ == "__main__":
    run()
