"""Everything written for TensorBoard, in one place: retrain.py's tags and what this version adds.

In ``--summaries_dir``, as retrain.py wrote them: ``train/`` (the graph, and per step the
``cross_entropy`` and ``accuracy`` scalars; at each evaluation the final layer's weight
and bias statistics ``final_retrain_ops/{weights,biases}/summaries/{mean,stddev,max,min,
histogram}`` and the ``pre_activations`` and ``activations`` histograms) and
``validation/`` (``accuracy``, ``cross_entropy``). Added: with --fine_tune, per epoch,
``fine_tune/accuracy`` and ``fine_tune/cross_entropy`` (train) and ``fine_tune/accuracy``
(validation); at the end of training, the validation set's confusion matrix as an image
and a precision-recall curve per class.

The per-step functions are graph code, called inside the compiled training loop with
top-level tags (not ``while/cond/...``).
"""

import contextlib

import numpy as np
import tensorflow as tf

from retrain.data import storage
from retrain.evaluation import metrics

TRAIN, VALIDATION = "train", "validation"


def prepare(summaries_dir: str) -> None:
    """Removes the train/ and validation/ event folders of an earlier run, nothing else
    (retrain.py deleted the whole folder)."""
    for name in (TRAIN, VALIDATION):
        storage.rmtree(storage.join(summaries_dir, name))
    storage.makedirs(summaries_dir)


class TrainingSummaries:
    """The train/ and validation/ writers of one training run."""

    def __init__(self, summaries_dir: str):
        self._train = tf.summary.create_file_writer(storage.join(summaries_dir, TRAIN))
        self._validation = tf.summary.create_file_writer(storage.join(summaries_dir, VALIDATION))

    def as_default(self):
        """The context in which step() writes (the train writer)."""
        return self._train.as_default()

    @staticmethod
    def step(cross_entropy: tf.Tensor, accuracy: tf.Tensor, step) -> None:
        """A training step's scalars, in the train writer made default by as_default()."""
        with tf.compat.v1.name_scope(None):
            tf.summary.scalar("cross_entropy", cross_entropy, step=step)
            tf.summary.scalar("accuracy", accuracy, step=step)

    def layer(self, weights: tf.Tensor, biases: tf.Tensor, logits: tf.Tensor, step) -> None:
        """The final layer at an evaluation: weights [dim, classes], biases [classes], logits [batch, classes]."""
        with self._train.as_default(), tf.compat.v1.name_scope(None):
            _variable_summaries(weights, "final_retrain_ops/weights", step)
            _variable_summaries(biases, "final_retrain_ops/biases", step)
            _histogram("final_retrain_ops/Wx_plus_b/pre_activations", logits, step)
            _histogram("final_retrain_ops/activations", tf.nn.softmax(logits), step)

    def validation(self, accuracy: tf.Tensor, cross_entropy: tf.Tensor, step) -> None:
        with self._validation.as_default(), tf.compat.v1.name_scope(None):
            tf.summary.scalar("accuracy", accuracy, step=step)
            tf.summary.scalar("cross_entropy", cross_entropy, step=step)

    def close(self) -> None:
        """Flushes and closes both writers."""
        for writer in (self._train, self._validation):
            writer.close()


def open_for_training(summaries_dir: str) -> TrainingSummaries | None:
    """The writers for summaries_dir, or None when it is '' (no summaries)."""
    return TrainingSummaries(summaries_dir) if summaries_dir else None


def writing(summaries: TrainingSummaries | None):
    """summaries.as_default(), or nothing to enter without summaries."""
    return summaries.as_default() if summaries is not None else contextlib.nullcontext()


def _variable_summaries(variable: tf.Tensor, scope: str, step) -> None:
    with tf.name_scope(scope):
        with tf.name_scope("summaries"):
            mean = tf.reduce_mean(variable)
            tf.summary.scalar("mean", mean, step=step)
            tf.summary.scalar("stddev", tf.sqrt(tf.reduce_mean(tf.square(variable - mean))), step=step)
            tf.summary.scalar("max", tf.reduce_max(variable), step=step)
            tf.summary.scalar("min", tf.reduce_min(variable), step=step)
    _histogram(f"{scope}/summaries/histogram", variable, step)


def _histogram(tag: str, values: tf.Tensor, step) -> None:
    """A histogram summary of values under tag (not name-scoped) at step.

    Made by the C++ HistogramSummary kernel: tf.summary.histogram builds its buckets
    from dozens of small ops, which made TensorBoard summaries cost more than the
    training steps themselves. TensorBoard shows both kinds alike.
    """
    tf.summary.experimental.write_raw_pb(tf.raw_ops.HistogramSummary(tag=tag, values=values), step=step)


def write_graph(summaries_dir: str, graph_def) -> None:
    """Puts graph_def in the train summaries under summaries_dir (TensorBoard's graph tab)."""
    writer = tf.summary.create_file_writer(storage.join(summaries_dir, TRAIN))
    with writer.as_default():
        tf.summary.graph(graph_def)
    writer.close()


def write_fine_tune_epoch(summaries_dir: str, epoch: int, train_accuracy: float, cross_entropy: float,
                          validation_accuracy: float) -> None:
    """Fine-tuning's figures after an epoch (1-based): fine_tune/accuracy and fine_tune/cross_entropy
    in train/, fine_tune/accuracy in validation/."""
    for name, scalars in ((TRAIN, {"accuracy": train_accuracy, "cross_entropy": cross_entropy}),
                          (VALIDATION, {"accuracy": validation_accuracy})):
        writer = tf.summary.create_file_writer(storage.join(summaries_dir, name))
        with writer.as_default():
            for tag, value in scalars.items():
                tf.summary.scalar(f"fine_tune/{tag}", value, step=epoch)
        writer.close()


def confusion_image(matrix: np.ndarray, cell: int | None = None) -> np.ndarray:
    """A heat map of a confusion matrix: uint8 [rows * cell, columns * cell, 3].

    Each cell is shaded by its share of its row (true label): white for none, deep
    blue for all, so the diagonal and the confused pairs show at a glance.
    """
    matrix = np.asarray(matrix, np.float64)
    cell = cell or max(4, 256 // max(1, matrix.shape[0]))
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    colours = white + shares[..., np.newaxis] * (blue - white)
    return np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1).astype(np.uint8)


def write_evaluation(summaries_dir: str, step: int, labels: list[str], scores: np.ndarray, truth: np.ndarray) -> None:
    """Puts the validation set's confusion matrix (an image) and per-class PR curves in
    summaries_dir/validation at step, for TensorBoard's Images and PR Curves tabs.

    Args:
      scores: float [n, classes] softmax scores; truth: int [n] label indices.
    """
    from tensorboard.plugins.pr_curve import summary as pr_curve

    scores = np.asarray(scores, np.float32)
    truth = np.asarray(truth, np.int64)
    matrix = metrics.confusion_matrix(truth, scores.argmax(axis=1), len(labels))
    writer = tf.summary.create_file_writer(storage.join(summaries_dir, VALIDATION))
    with writer.as_default():
        tf.summary.image(
            "confusion_matrix",
            confusion_image(matrix)[np.newaxis],
            step=step,
            description="Rows: true label, columns: predicted, in label order: " + ", ".join(labels),
        )
        for index, label in enumerate(labels):
            summary = pr_curve.pb(
                f"pr_curve/{label.strip().replace(' ', '_') or index}",
                labels=truth == index,
                predictions=scores[:, index],
                num_thresholds=101,
                display_name=f"{label} (one against the rest)",
            )
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
    writer.close()
