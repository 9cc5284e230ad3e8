"""An evaluation report people look at: one static HTML page with its pictures beside it.

``DIR/index.html`` reads offline (no scripts, no network): the accuracy and what the
"unknown" threshold means; the confusion matrix as a heat map, so the confused pair
stands out; precision, recall and F1 per class; a reliability diagram (top score
against accuracy, before and after calibration when the model is calibrated); the
accuracy-coverage curve with the threshold marked; and the misclassified images as
thumbnails with true label, predicted label and score, most confident first, so
mislabelled images jump out.

Plots come from matplotlib and the page from a Jinja2 template: ``pip install
"retrain[report]"``. Without them, asking for a report fails at once with that line.
"""

import dataclasses
import io

import numpy as np

from retrain.data import storage
from retrain.errors import ImageError, require_modules
from retrain.evaluation import calibration, metrics

INSTALL_HINT = 'The evaluation report needs matplotlib and jinja2: pip install "retrain[report]"'
THUMBNAIL_SIZE = 160
MAX_THUMBNAILS = 300


def check_available() -> None:
    """Raises UserError (with the pip line) unless the report's libraries are installed."""
    require_modules(INSTALL_HINT, "jinja2", "matplotlib")


@dataclasses.dataclass
class ReportData:
    """What a report shows.

    Attributes:
      title: the page's heading (e.g. the model and the image set).
      labels: label names in class order.
      image_paths: n image files.
      truth: int [n] true label indices.
      scores: float [n, classes] softmax scores.
      calibrated: float [n, classes] calibrated scores, or None.
      unknown_threshold: threshold on the calibrated (else plain) top score, or None.
    """

    title: str
    labels: list[str]
    image_paths: list[str]
    truth: np.ndarray
    scores: np.ndarray
    calibrated: np.ndarray | None = None
    unknown_threshold: float | None = None


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; text-align: right; }
th:first-child, td:first-child { text-align: left; } tr:nth-child(even) { background: #f4f4f4; }
.low { color: #b00; font-weight: bold; } figure { display: inline-block; margin: 0.4em; width: {{ thumb }}px; }
figure img { width: {{ thumb }}px; height: {{ thumb }}px; object-fit: contain; background: #eee; }
figcaption { font-size: 0.8em; word-wrap: break-word; } .plot { max-width: 100%; }
</style></head>
<body>
<h1>{{ title }}</h1>
<p>{{ count }} images, {{ labels|length }} classes. Accuracy <b>{{ "%.1f"|format(accuracy * 100) }}%</b>.
{% if threshold is not none %}At the unknown threshold {{ "%.3f"|format(threshold) }}: {{ "%.1f"|format(coverage * 100) }}%
of the images are answered{% if covered_accuracy is not none %}, {{ "%.1f"|format(covered_accuracy * 100) }}% of them
correctly{% endif %}; the rest answer "unknown".{% endif %}</p>

<h2>Confusion matrix</h2>
<p>Rows: true label; columns: predicted. Off the diagonal, the pairs the model confuses.</p>
<img class="plot" src="confusion_matrix.png" alt="Confusion matrix heat map">

<h2>Per class</h2>
<table><tr><th>label</th><th>images</th><th>precision</th><th>recall</th><th>F1</th>
{% if threshold is not none %}<th>answered</th><th>accuracy answered</th>{% endif %}</tr>
{% for row in per_class %}<tr><td>{{ row.label }}</td><td>{{ row.count }}</td>
<td class="{{ row.precision_class }}">{{ row.precision }}</td><td class="{{ row.recall_class }}">{{ row.recall }}</td>
<td>{{ row.f1 }}</td>{% if threshold is not none %}<td>{{ row.coverage }}</td><td>{{ row.covered_accuracy }}</td>{% endif %}</tr>
{% endfor %}</table>

<h2>Reliability</h2>
<p>Accuracy against top score, in bins: on the diagonal, a score of 0.8 is right 80% of the time.
{% if calibrated %}Calibration (temperature scaling) is the model's own.{% endif %}</p>
<img class="plot" src="reliability.png" alt="Reliability diagram">

<h2>Accuracy and coverage</h2>
<p>Answering only the images whose top score is above a threshold: accuracy of the answers against the share answered.</p>
<img class="plot" src="coverage.png" alt="Accuracy-coverage curve">

<h2>Misclassified images ({{ mistakes|length }}{% if more_mistakes %} of {{ more_mistakes }}{% endif %})</h2>
<p>Most confident mistakes first: near the top, often an image with the wrong label.</p>
{% for m in mistakes %}<figure><img src="{{ m.thumbnail }}" alt="{{ m.path }}">
<figcaption><b>{{ m.predicted }}</b> {{ "%.3f"|format(m.score) }}<br>true: {{ m.truth }}<br>{{ m.name }}</figcaption></figure>
{% endfor %}
</body></html>
"""


def _format(value, low=None):
    if value is None:
        return "-", ""
    return f"{value:.3f}", ("low" if low is not None and value < low else "")


def png(figure) -> bytes:
    """A matplotlib figure as PNG bytes (100 dpi, tight)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _confusion_plot(plt, matrix: np.ndarray, labels: list[str]) -> bytes:
    size = max(4.0, 0.6 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(labels) <= 30:
        for (i, j), count in np.ndenumerate(matrix):
            axes.text(j, i, str(count), ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    data = png(figure)
    plt.close(figure)
    return data


def _reliability_plot(plt, data: ReportData) -> bytes:
    figure, axes = plt.subplots(figsize=(5.5, 5))
    axes.plot([0, 1], [0, 1], color="#999", linestyle="--", label="perfect calibration")
    curves = [("softmax", data.scores, "#d62728")]
    if data.calibrated is not None:
        curves.append(("calibrated", data.calibrated, "#1f77b4"))
    for name, scores, colour in curves:
        points = calibration.reliability(scores, data.truth)
        ece = calibration.expected_calibration_error(scores, data.truth)
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colour,
                  label=f"{name} (ECE {ece:.3f})")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("top score")
    axes.set_ylabel("accuracy")
    axes.legend(loc="upper left")
    result = png(figure)
    plt.close(figure)
    return result


def _coverage_plot(plt, confidence: np.ndarray, correct: np.ndarray, threshold: float | None) -> bytes:
    figure, axes = plt.subplots(figsize=(5.5, 4))
    _, coverage, accuracy = calibration.coverage_curve(confidence, correct)
    axes.plot(coverage, accuracy, color="#1f77b4")
    if threshold is not None:
        point = calibration.measure_threshold(confidence, correct, threshold)
        if point.accuracy is not None:
            axes.plot([point.coverage], [point.accuracy], marker="o", color="#d62728", markersize=8,
                      label=f"threshold {threshold:.3f}")
            axes.legend(loc="lower left")
    axes.set_xlim(0, 1.02)
    axes.set_xlabel("share of images answered (coverage)")
    axes.set_ylabel("accuracy of the answers")
    result = png(figure)
    plt.close(figure)
    return result


def thumbnail(path: str) -> bytes:
    """A JPEG thumbnail (at most twice THUMBNAIL_SIZE a side) of the image at path, upright."""
    from PIL import Image

    from retrain.data import images

    pixels = images.read_image(path)
    image = Image.fromarray(pixels)
    image.thumbnail((THUMBNAIL_SIZE * 2, THUMBNAIL_SIZE * 2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def write_report(report_dir: str, data: ReportData) -> str:
    """Writes report_dir/index.html and its pictures; returns the page's path.

    Raises:
      UserError: the report's libraries are missing.
    """
    check_available()
    import jinja2
    import matplotlib

    matplotlib.use("Agg")  # Files only, no screen.
    import matplotlib.pyplot as plt

    truth = np.asarray(data.truth, np.int64)
    scores = np.asarray(data.scores)
    predicted = scores.argmax(axis=1)
    confident = data.calibrated if data.calibrated is not None else scores
    confidence = np.asarray(confident).max(axis=1)
    correct = predicted == truth
    report = metrics.evaluate(truth, predicted, scores.max(axis=1), data.labels,
                                 confidences=confidence, threshold=data.unknown_threshold)
    matrix = np.asarray(report.confusion_matrix)
    storage.makedirs(report_dir)
    storage.write_bytes(storage.join(report_dir, "confusion_matrix.png"), _confusion_plot(plt, matrix, data.labels))
    storage.write_bytes(storage.join(report_dir, "reliability.png"), _reliability_plot(plt, data))
    storage.write_bytes(storage.join(report_dir, "coverage.png"), _coverage_plot(plt, confidence, correct,
                                                                                 data.unknown_threshold))
    wrong = np.flatnonzero(~correct)
    wrong = wrong[np.argsort(-scores.max(axis=1)[wrong], kind="stable")]
    mistakes = []
    for rank, i in enumerate(wrong[:MAX_THUMBNAILS]):
        name = f"thumbnails/{rank:04d}.jpg"
        try:
            storage.write_bytes(storage.join(report_dir, *name.split("/")), thumbnail(data.image_paths[i]))
        except ImageError:
            continue  # Gone since it was classified: listed without a picture.
        mistakes.append({
            "thumbnail": name,
            "path": data.image_paths[i],
            "name": storage.basename(data.image_paths[i]),
            "truth": data.labels[truth[i]],
            "predicted": data.labels[predicted[i]],
            "score": float(scores[i].max()),
        })
    per_class = []
    for label, stats in report.per_label.items():
        precision, precision_class = _format(stats.precision, low=0.8)
        recall, recall_class = _format(stats.recall, low=0.8)
        per_class.append({
            "label": label, "count": stats.count, "precision": precision, "precision_class": precision_class,
            "recall": recall, "recall_class": recall_class, "f1": _format(stats.f1)[0],
            "coverage": _format(stats.coverage)[0], "covered_accuracy": _format(stats.covered_accuracy)[0],
        })
    environment = jinja2.Environment(autoescape=True)
    page = environment.from_string(_TEMPLATE).render(
        title=data.title,
        count=len(truth),
        labels=data.labels,
        accuracy=report.accuracy,
        threshold=data.unknown_threshold,
        coverage=report.coverage,
        covered_accuracy=report.covered_accuracy,
        per_class=per_class,
        calibrated=data.calibrated is not None,
        mistakes=mistakes,
        more_mistakes=len(wrong) if len(wrong) > MAX_THUMBNAILS else 0,
        thumb=THUMBNAIL_SIZE,
    )
    path = storage.join(report_dir, "index.html")
    storage.write_text(path, page)
    return path


def title_for(model: str, images: str) -> str:
    """A page title naming the model and the images (the template escapes it)."""
    return f"{storage.basename(model.rstrip('/')) or model} on {images}"
