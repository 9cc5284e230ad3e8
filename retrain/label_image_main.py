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
import os
import sys

from absl import app, flags, logging

from retrain import cli
from retrain import config as config_lib

_D = config_lib.LabelImageConfig()
OUTPUT_FORMATS = ("text", "json", "csv")

_GRAPH = flags.DEFINE_string(
    "graph", "", "Graph to be executed: a frozen GraphDef (.pb) or a SavedModel folder."
)
_LABELS = flags.DEFINE_string("labels", "", "Name of file containing labels, one per line.")
_IMAGE = flags.DEFINE_multi_string(
    "image", [], "Image to be processed; repeat it, or name a folder to classify every image in it."
)
_IMAGE_DIR = flags.DEFINE_string(
    "image_dir", "", "A folder with one sub-folder of images per class, named as for retrain."
)
_EVALUATE = flags.DEFINE_boolean(
    "evaluate", False, "Check the graph on --image_dir, whose folder names give the true labels."
)
_MIN_ACCURACY = flags.DEFINE_float(
    "min_accuracy", None, "With --evaluate: exit with status 1 when the accuracy (0..1) is below this."
)
_INPUT_LAYER = flags.DEFINE_string("input_layer", _D.input_layer, "Name of input layer.")
_OUTPUT_LAYER = flags.DEFINE_string("output_layer", _D.output_layer, "Name of output layer.")
_INPUT_HEIGHT = flags.DEFINE_integer(
    "input_height", None, "Input height (default: the graph's input height when fixed, else 299)."
)
_INPUT_WIDTH = flags.DEFINE_integer(
    "input_width", None, "Input width (default: the graph's input width when fixed, else 299)."
)
_INPUT_MEAN = flags.DEFINE_float("input_mean", _D.input_mean, "Subtracted from each pixel value (0-255).")
_INPUT_STD = flags.DEFINE_float("input_std", _D.input_std, "Pixel values are divided by this after the mean.")
_TOP_K = flags.DEFINE_integer("top_k", _D.top_k, "How many labels to show per image, best first.")
_OUTPUT_FORMAT = flags.DEFINE_enum(
    "output_format", _D.output_format, list(OUTPUT_FORMATS),
    "text: `label score` lines; json: one document; csv: one row per image.",
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _D.batch_size, "Images per forward pass.")
_LOGGING_VERBOSITY = flags.DEFINE_enum(
    "logging_verbosity", "WARN", list(config_lib.LOGGING_VERBOSITIES),
    "How much logging output should be produced. DEBUG also shows tracebacks of errors.",
)


def _check_flags(extra_images: list[str]) -> None:
    if not _GRAPH.value:
        raise cli.UsageError("--graph is required")
    if not _LABELS.value:
        raise cli.UsageError("--labels is required")
    if _EVALUATE.value and not _IMAGE_DIR.value:
        raise cli.UsageError("--evaluate needs --image_dir")
    if _MIN_ACCURACY.value is not None:
        if not _EVALUATE.value:
            raise cli.UsageError("--min_accuracy needs --evaluate")
        if not 0.0 <= _MIN_ACCURACY.value <= 1.0:
            raise cli.UsageError(f"--min_accuracy must be between 0 and 1, not {_MIN_ACCURACY.value}")
    if not (_IMAGE.value or extra_images or _IMAGE_DIR.value):
        raise cli.UsageError("name images with --image (files or folders) or --image_dir")
    if _TOP_K.value <= 0 or _BATCH_SIZE.value <= 0:
        raise cli.UsageError("--top_k and --batch_size must be positive")
    if _INPUT_STD.value == 0:
        raise cli.UsageError("--input_std must not be 0")
    for holder in (_INPUT_HEIGHT, _INPUT_WIDTH):
        if holder.value is not None and holder.value <= 0:
            raise cli.UsageError(f"--{holder.name} must be positive, not {holder.value}")


def _ranked(scores, labels, top_k):
    order = scores.argsort()[::-1][:top_k]
    return [(labels[i], scores[i]) for i in order]


def _labelled_images(image_dir: str, labels: list[str]) -> tuple[list[str], list[int]]:
    """Images under image_dir/<class>/ whose folder maps to a label, and their label indices."""
    from retrain import image_lists
    from retrain.errors import UserError

    paths, truth = [], []
    for dir_name in image_lists.list_class_dirs(image_dir):
        label = image_lists.label_from_dir_name(dir_name)
        if label not in labels:
            print(f"label-image: warning: folder '{dir_name}' is not a label of this graph; skipped", file=sys.stderr)
            continue
        for name in image_lists.list_images(os.path.join(image_dir, dir_name)):
            paths.append(os.path.join(image_dir, dir_name, name))
            truth.append(labels.index(label))
    if not paths:
        raise UserError(f"No images under {image_dir} in folders named after the labels ({', '.join(labels)}).")
    return paths, truth


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
    if evaluation.suggested_threshold is not None:
        lines.append(
            f"\nSuggested score threshold: {evaluation.suggested_threshold:.4f} (mean top score of misses "
            f"{evaluation.mean_score_misses:.4f}, of hits {evaluation.mean_score_hits:.4f}); answer "
            "'not sure' below it."
        )
    else:
        lines.append("\nSuggested score threshold: none (needs both hits and misses).")
    return "\n".join(lines)


def _classify(extra_images: list[str]) -> int:
    import numpy as np

    from retrain import evaluation as evaluation_lib
    from retrain import inference
    from retrain.errors import UserError

    labels = inference.read_labels(_LABELS.value)
    classifier = inference.load_classifier(
        _GRAPH.value,
        input_layer=_INPUT_LAYER.value,
        output_layer=_OUTPUT_LAYER.value,
        height=_INPUT_HEIGHT.value,
        width=_INPUT_WIDTH.value,
    )
    if classifier.class_count is not None and classifier.class_count != len(labels):
        raise UserError(
            f"{_LABELS.value} has {len(labels)} labels but the graph's output has {classifier.class_count} classes."
        )
    failures = []
    truth_of = {}
    if _EVALUATE.value:
        paths, truth = _labelled_images(_IMAGE_DIR.value, labels)
        truth_of = dict(zip(paths, truth))
    else:
        paths, failures = inference.find_images(list(_IMAGE.value) + extra_images + ([_IMAGE_DIR.value] if _IMAGE_DIR.value else []))
    for target, error in failures:
        print(f"label-image: error: {error}", file=sys.stderr)

    fmt = _OUTPUT_FORMAT.value
    top_k = _TOP_K.value
    many = len(paths) > 1
    records = []
    writer = None
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        header = ["path"] + (["true_label", "correct"] if _EVALUATE.value else [])
        for rank in range(1, min(top_k, len(labels)) + 1):
            header += [f"label_{rank}", f"score_{rank}"]
        writer.writerow(header)
    results = inference.classify_files(
        classifier, paths, mean=_INPUT_MEAN.value, std=_INPUT_STD.value, batch_size=_BATCH_SIZE.value
    )
    for path, scores, error in results:
        if error is not None:
            print(f"label-image: error: {error}", file=sys.stderr)
            failures.append((path, error))
            continue
        if scores.shape[0] != len(labels):
            raise UserError(f"{_LABELS.value} has {len(labels)} labels but the graph gave {scores.shape[0]} scores.")
        ranked = _ranked(scores, labels, top_k)
        record = {"path": path, "predictions": [{"label": l, "score": float(s)} for l, s in ranked]}
        if _EVALUATE.value:
            true_label = labels[truth_of[path]]
            record.update(true_label=true_label, correct=ranked[0][0] == true_label,
                          top_score=float(scores.max()), predicted_index=int(scores.argmax()))
        records.append(record)
        if fmt == "text":
            if many:
                print(f"== {path}" + (f" (true label: {record['true_label']})" if _EVALUATE.value else ""))
            for label, score in ranked:
                print(label, score)
            if _EVALUATE.value and not record["correct"]:
                print(f"WARNING: top label '{ranked[0][0]}' is wrong, expected '{record['true_label']}'")
        elif fmt == "csv":
            row = [path] + ([record["true_label"], record["correct"]] if _EVALUATE.value else [])
            for label, score in ranked:
                row += [label, f"{float(score):.6g}"]
            writer.writerow(row)

    document = {"images": records, "failed": [{"path": p, "error": e} for p, e in failures]}
    status = cli.EXIT_FAILURE if failures else cli.EXIT_OK
    if _EVALUATE.value and records:
        report = evaluation_lib.evaluate(
            np.array([truth_of[r["path"]] for r in records]),
            np.array([r["predicted_index"] for r in records]),
            np.array([r["top_score"] for r in records]),
            labels,
        )
        for record in records:
            del record["predicted_index"]
        document.update(report.to_json())
        if fmt == "text":
            print(_text_report(report))
        elif fmt == "csv":
            print(_text_report(report), file=sys.stderr)
        gate = _MIN_ACCURACY.value
        if gate is not None:
            if report.accuracy < gate:
                print(f"label-image: accuracy {report.accuracy:.4f} is below --min_accuracy {gate}", file=sys.stderr)
                status = cli.EXIT_FAILURE
            else:
                print(f"label-image: accuracy {report.accuracy:.4f} meets --min_accuracy {gate}", file=sys.stderr)
    if fmt == "json":
        json.dump(document, sys.stdout, indent=2)
        print()
    if failures:
        print(f"label-image: {len(failures)} file(s) could not be classified.", file=sys.stderr)
    return status


def main(argv) -> int:
    extra_images = list(argv[1:])  # File names after the flags (a shell glob) are images too.
    logging.set_verbosity(cli.VERBOSITY_LEVELS[_LOGGING_VERBOSITY.value])

    def body():
        _check_flags(extra_images)
        cli.import_tensorflow_quietly(verbose=_LOGGING_VERBOSITY.value == "DEBUG")
        return _classify(extra_images)

    return cli.run_guarded("label-image", body)


def run() -> None:
    """Console entry point of `label-image`."""
    cli.quiet_tensorflow()
    app.run(main, flags_parser=cli.flags_parser("label-image", sys.modules[__name__], allow_positional=True))


if __name__ == "__main__":
    run()
