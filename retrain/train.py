"""Train the new softmax layer on in-memory bottlenecks, as retrain.py did, but fast.

Same model (logits = xW + b, W ~ truncated normal(0.001), b = 0), loss (mean sparse
softmax cross entropy), optimiser (plain SGD), class-balanced sampling with
replacement, evaluation schedule and log lines. Differences: the bottlenecks live in
memory, sampling and the steps between two evaluations run inside one compiled
TensorFlow loop, and classes whose validation or test set is empty are left out of
those instead of crashing.
"""

import contextlib
import dataclasses
import datetime
import functools
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from retrain import config as config_lib
from retrain import evaluation, storage
from retrain.bottlenecks import BottleneckSet

# Draws are `randint(0, 2**27) % class size`, as retrain.py drew them.
_INDEX_RANGE = config_lib.MAX_NUM_IMAGES_PER_CLASS + 1


@dataclasses.dataclass
class TrainResult:
    """What training produced.

    Attributes:
      weights: float32 [dim, classes]; biases: float32 [classes].
      test_accuracy: in [0, 1], or None when there are no test images.
      test_count: how many test images were evaluated.
      misclassified: (image path, predicted class index) of each wrong test image.
    """

    weights: np.ndarray
    biases: np.ndarray
    test_accuracy: float | None
    test_count: int
    misclassified: list[tuple[str, int]]


class FinalLayer(tf.Module):
    """The retrained layer: bottleneck float32 [batch, dim] -> logits [batch, classes].

    The weights are kept transposed, [classes, dim]: the gradient is then a product
    with the small factor transposed (d_logits^T . bottlenecks) instead of the batch
    of bottlenecks, three times faster per step on a CPU. weights gives [dim, classes].
    """

    def __init__(self, dim: int, class_count: int, seed: int):
        super().__init__(name="final_retrain_ops")
        initial = tf.random.stateless_truncated_normal([dim, class_count], seed=[seed, 1], stddev=0.001)
        self.weights_t = tf.Variable(tf.transpose(initial), name="final_weights")
        self.biases = tf.Variable(tf.zeros([class_count]), name="final_biases")

    @property
    def weights(self) -> tf.Tensor:
        """float32 [dim, classes], as exported."""
        return tf.transpose(self.weights_t)

    def __call__(self, bottlenecks: tf.Tensor) -> tf.Tensor:
        return tf.matmul(bottlenecks, self.weights_t, transpose_b=True) + self.biases


class _Sampler:
    """Class-balanced draws with replacement from one in-memory BottleneckSet.

    A draw picks a class uniformly among the classes that have images in the set,
    then an image of that class uniformly; batch_size < 0 takes the whole set.
    """

    def __init__(self, bottleneck_set: BottleneckSet, class_count: int):
        order = np.argsort(bottleneck_set.labels, kind="stable")
        labels = bottleneck_set.labels[order]
        counts = np.bincount(labels, minlength=class_count)
        self.order = order
        self.features = tf.constant(bottleneck_set.features[order])
        self.labels = tf.constant(labels)
        self.size = len(labels)
        self._starts = tf.constant(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))
        self._counts = tf.constant(counts.astype(np.int64))
        self._classes = tf.constant(np.flatnonzero(counts).astype(np.int64))

    def sample_rows(self, generator: tf.random.Generator, batch_size: int) -> tf.Tensor:
        """int64 [batch_size] rows of self.features drawn class-balanced with replacement."""
        pick = generator.uniform([batch_size], 0, tf.size(self._classes, tf.int64), dtype=tf.int64)
        classes = tf.gather(self._classes, pick)
        draws = generator.uniform([batch_size], 0, _INDEX_RANGE, dtype=tf.int64)
        return tf.gather(self._starts, classes) + draws % tf.gather(self._counts, classes)

    def sample(self, generator: tf.random.Generator, batch_size: int):
        """(features float32 [batch, dim], labels int64 [batch]); batch_size < 0: all."""
        if batch_size < 0:
            return self.features, self.labels
        rows = self.sample_rows(generator, batch_size)
        return tf.gather(self.features, rows), tf.gather(self.labels, rows)


def _cross_entropy(logits, labels):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def _accuracy(logits, labels):
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))


def _variable_summaries(variable: tf.Variable, scope: str, step) -> None:
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


# The numbers of an evaluation, in the order _run_block stacks them (-1: not there).
EVALUATION_FIELDS = (
    "train_accuracy", "cross_entropy", "validation_accuracy", "validation_cross_entropy", "validation_count",
)


def _evaluation_dict(row) -> dict:
    """An evaluation from one row of _run_block's, without the fields that were not there."""
    result = {name: value for name, value in zip(EVALUATION_FIELDS, row.tolist()) if name.startswith(("train", "cross"))}
    if row[EVALUATION_FIELDS.index("validation_count")] >= 0:
        result.update({name: value for name, value in zip(EVALUATION_FIELDS, row.tolist()) if name.startswith("validation")})
    return result


def _now() -> str:
    return str(datetime.datetime.now())


class Trainer:
    """Trains a FinalLayer on in-memory bottlenecks; see train() for the whole run."""

    def __init__(
        self,
        *,
        sets: dict[str, BottleneckSet],
        class_count: int,
        train_config: config_lib.TrainConfig,
        seed: int,
        summaries_dir: str = "",
        batch_source: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        self.config = train_config
        self.batch_source = batch_source
        dim = sets["training"].features.shape[1]
        self.layer = FinalLayer(dim, class_count, seed)
        self.generator = tf.random.Generator.from_seed(seed)
        self.training = _Sampler(sets["training"], class_count)
        self.validation = _Sampler(sets["validation"], class_count)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.learning_rate = tf.constant(train_config.learning_rate, tf.float32)
        self._train_writer = self._validation_writer = None
        if summaries_dir:
            self._train_writer = tf.summary.create_file_writer(storage.join(summaries_dir, "train"))
            self._validation_writer = tf.summary.create_file_writer(storage.join(summaries_dir, "validation"))

    def _apply_step(self, features, labels, write_summaries: bool) -> None:
        """One SGD step on the mean cross entropy; the gradient written out, not taped.

        The cross-entropy kernel returns each row's gradient (softmax - one-hot) with
        its loss, so a step is two small products: a quarter of a taped step's ops.
        """
        logits = self.layer(features)
        losses, backprop = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=logits, labels=labels)
        loss = tf.reduce_mean(losses)
        d_logits = backprop / tf.cast(tf.shape(backprop)[0], tf.float32)
        if write_summaries:
            with tf.compat.v1.name_scope(None):  # Top-level tags, not "while/...".
                tf.summary.scalar("cross_entropy", loss, step=self.step)
                tf.summary.scalar("accuracy", _accuracy(logits, labels), step=self.step)
        self.layer.weights_t.assign_sub(self.learning_rate * tf.matmul(d_logits, features, transpose_a=True))
        self.layer.biases.assign_sub(self.learning_rate * tf.reduce_sum(d_logits, axis=0))
        self.step.assign_add(1)

    @tf.function(reduce_retracing=True, autograph=False)
    def _step_on(self, features, labels):
        """One step on a batch made outside (distorted images)."""
        self._apply_step(features, labels, self._train_writer is not None)

    @functools.partial(tf.function, autograph=False)
    def _run_block(self, count, eval_interval, last_step):
        """Runs count sampled training steps in one call, evaluating after each step s
        (0-based) with s % eval_interval == 0 or s == last_step, as retrain.py did.

        Written with tf.while_loop and tf.cond rather than through AutoGraph: tracing
        it then takes a fraction of a second instead of more than one.

        Returns:
          (int64 [k] the steps evaluated, float32 [k, len(EVALUATION_FIELDS)] their
          evaluations): one fetch for hundreds of steps instead of one per stop.
        """
        dim = self.layer.weights_t.shape[1]
        fields = len(EVALUATION_FIELDS)
        write_summaries = self._train_writer is not None

        def evaluate(features, labels, step, steps, rows, written):
            result = self._evaluation(features, labels)
            row = tf.stack([tf.cast(result.get(name, -1), tf.float32) for name in EVALUATION_FIELDS])
            return steps.write(written, step), rows.write(written, row), written + 1

        def body(i, steps, rows, written):
            features, labels = self.training.sample(self.generator, self.config.train_batch_size)
            features.set_shape([None, dim])
            self._apply_step(features, labels, write_summaries)
            step = self.step - 1
            due = tf.logical_or(tf.equal(step % eval_interval, 0), tf.equal(step, last_step))
            steps, rows, written = tf.cond(
                due,
                lambda: evaluate(features, labels, step, steps, rows, written),
                lambda: (steps, rows, written),
            )
            return i + 1, steps, rows, written

        _, steps, rows, _ = tf.while_loop(
            lambda i, *_: i < count,
            body,
            (
                tf.constant(0),
                tf.TensorArray(tf.int64, size=0, dynamic_size=True),
                tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[fields]),
                tf.constant(0),
            ),
        )
        return steps.stack(), rows.stack()

    @tf.function(reduce_retracing=True, autograph=False)
    def _evaluate_on(self, features, labels):
        """_evaluation after steps on batches made outside."""
        return self._evaluation(features, labels)

    def _evaluation(self, features, labels) -> dict:
        """retrain.py's evaluation after a step, as graph code; writes its summaries.

        Args:
          features, labels: the batch the last step trained on.

        Returns:
          {"train_accuracy", "cross_entropy"} on that batch and, when there are
          validation images, {"validation_accuracy", "validation_cross_entropy",
          "validation_count"} on a fresh validation sample.
        """
        step = self.step - 1  # The 0-based step just run, as retrain.py numbered them.
        logits = self.layer(features)
        result = {"train_accuracy": _accuracy(logits, labels), "cross_entropy": _cross_entropy(logits, labels)}
        if self._train_writer is not None:
            # Top-level tags, as retrain.py's, not "while/cond/...".
            with self._train_writer.as_default(), tf.compat.v1.name_scope(None):
                _variable_summaries(self.layer.weights, "final_retrain_ops/weights", step)
                _variable_summaries(self.layer.biases, "final_retrain_ops/biases", step)
                _histogram("final_retrain_ops/Wx_plus_b/pre_activations", logits, step)
                _histogram("final_retrain_ops/activations", tf.nn.softmax(logits), step)
        if self.validation.size == 0:
            return result
        val_features, val_labels = self.validation.sample(self.generator, self.config.validation_batch_size)
        val_logits = self.layer(val_features)
        result["validation_accuracy"] = _accuracy(val_logits, val_labels)
        result["validation_cross_entropy"] = _cross_entropy(val_logits, val_labels)
        result["validation_count"] = tf.size(val_labels)
        if self._validation_writer is not None:
            with self._validation_writer.as_default(), tf.compat.v1.name_scope(None):
                tf.summary.scalar("accuracy", result["validation_accuracy"], step=step)
                tf.summary.scalar("cross_entropy", result["validation_cross_entropy"], step=step)
        return result

    def close(self) -> None:
        """Flushes and closes the summary writers."""
        for writer in (self._train_writer, self._validation_writer):
            if writer is not None:
                writer.close()

    def run_steps(self, count: int, eval_interval: int, last_step: int) -> list[tuple[int, dict]]:
        """Runs count steps; returns (step, evaluation) for each step evaluated on the way.

        Steps evaluated: s % eval_interval == 0 or s == last_step (0-based). An
        evaluation is a dict of numbers (see _evaluation). Sampled steps run in one
        call into TensorFlow; steps on batches made outside, one call each.
        """
        with self._train_writer.as_default() if self._train_writer else contextlib.nullcontext():
            if self.batch_source is None:
                steps, rows = self._run_block(
                    tf.constant(count), tf.constant(eval_interval, tf.int64), tf.constant(last_step, tf.int64)
                )
                return [(int(step), _evaluation_dict(row)) for step, row in zip(steps.numpy(), rows.numpy())]
            found = []
            for _ in range(count):
                features, labels = (tf.constant(t) for t in self.batch_source())
                self._step_on(features, labels)
                step = int(self.step.numpy()) - 1
                if step % eval_interval == 0 or step == last_step:
                    result = self._evaluate_on(features, labels)
                    found.append((step, {name: value.numpy() for name, value in result.items()}))
            return found

    @staticmethod
    def log_evaluation(step: int, result: dict) -> None:
        """retrain.py's three log lines for an evaluation after step (0-based)."""
        logging.info("%s: Step %d: Train accuracy = %.1f%%", _now(), step, result["train_accuracy"] * 100)
        logging.info("%s: Step %d: Cross entropy = %f", _now(), step, result["cross_entropy"])
        if "validation_accuracy" in result:
            logging.info(
                "%s: Step %d: Validation accuracy = %.1f%% (N=%d)",
                _now(),
                step,
                result["validation_accuracy"] * 100,
                result["validation_count"],
            )

    def test(self, test_set: BottleneckSet, class_count: int) -> tuple[float | None, int, list[tuple[str, int]]]:
        """Accuracy on test_batch_size test images (-1: all), and the misclassified ones."""
        if len(test_set) == 0:
            return None, 0, []
        if self.config.test_batch_size < 0:
            chosen = np.arange(len(test_set))
        else:
            sampler = _Sampler(test_set, class_count)
            chosen = sampler.order[sampler.sample_rows(self.generator, self.config.test_batch_size).numpy()]
        features, labels = test_set.features[chosen], test_set.labels[chosen]
        paths = [test_set.image_paths[i] for i in chosen]
        # In numpy: one product, not worth tracing a function for (a third of a second).
        logits = features @ self.layer.weights.numpy() + self.layer.biases.numpy()
        predictions = logits.argmax(axis=1)
        wrong = [(paths[i], int(predictions[i])) for i in np.flatnonzero(predictions != labels)]
        return float(np.mean(predictions == labels)), len(labels), wrong


def write_graph_summary(summaries_dir: str, graph_def) -> None:
    """Puts graph_def in the train summaries under summaries_dir (TensorBoard's graph tab)."""
    writer = tf.summary.create_file_writer(storage.join(summaries_dir, "train"))
    with writer.as_default():
        tf.summary.graph(graph_def)
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


def write_evaluation_summaries(
    summaries_dir: str, step: int, labels: list[str], scores: np.ndarray, truth: np.ndarray
) -> None:
    """Puts the validation set's confusion matrix (an image) and per-class PR curves in
    summaries_dir/validation at step, for TensorBoard's Images and PR Curves tabs.

    Args:
      scores: float [n, classes] softmax scores; truth: int [n] label indices.
    """
    from tensorboard.plugins.pr_curve import summary as pr_curve

    scores = np.asarray(scores, np.float32)
    truth = np.asarray(truth, np.int64)
    matrix = evaluation.confusion_matrix(truth, scores.argmax(axis=1), len(labels))
    writer = tf.summary.create_file_writer(storage.join(summaries_dir, "validation"))
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


# Sampled steps run in blocks of at most this many evaluations between two calls into
# Python: the log keeps up, and a block of 4,000 steps costs one call, not 400.
_EVALUATIONS_PER_BLOCK = 50


def training_schedule(steps: int, eval_interval: int, store_frequency: int) -> list[int]:
    """The 0-based steps after which training returns to Python: to log, or store a graph.

    retrain.py evaluates after step i when i % eval_interval == 0 or i is the last
    step (evaluations run inside the blocks); it stores an intermediate graph when
    store_frequency > 0, i > 0 and i % store_frequency == 0, which ends a block.
    """
    stops = {steps - 1}
    stops.update(range(0, steps, eval_interval * _EVALUATIONS_PER_BLOCK))
    if store_frequency > 0:
        stops.update(range(store_frequency, steps, store_frequency))
    return sorted(s for s in stops if s >= 0)


def train(
    *,
    sets: dict[str, BottleneckSet],
    class_count: int,
    train_config: config_lib.TrainConfig,
    seed: int,
    summaries_dir: str = "",
    intermediate_store_frequency: int = 0,
    on_intermediate: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    batch_source: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
) -> TrainResult:
    """Trains the final layer, logging as retrain.py did, and tests it.

    Args:
      sets: 'training', 'validation' and 'testing' bottlenecks (see bottlenecks.py).
      class_count: number of classes; labels in the sets are below it.
      train_config: steps, learning rate, batch sizes, evaluation interval.
      seed: seeds the initial weights and all sampling.
      summaries_dir: where to write TensorBoard 'train' and 'validation' events; '' for none.
      intermediate_store_frequency: call on_intermediate every this many steps (0: never).
      on_intermediate: called with (step, weights [dim, classes], biases [classes]).
      batch_source: when given, each step trains on the (bottlenecks float32
        [batch, dim], labels int64 [batch]) it returns instead of sampling
        sets['training'] (used for distorted images, made anew every step).

    Returns:
      The trained weights and the final test result.
    """
    trainer = Trainer(
        sets=sets,
        class_count=class_count,
        train_config=train_config,
        seed=seed,
        summaries_dir=summaries_dir,
        batch_source=batch_source,
    )
    if len(sets["validation"]) == 0:
        logging.warning("No validation images: validation accuracy is not reported.")
    steps = train_config.how_many_training_steps
    eval_interval = train_config.eval_step_interval
    done = 0
    for stop in training_schedule(steps, eval_interval, intermediate_store_frequency):
        for step, result in trainer.run_steps(stop + 1 - done, eval_interval, steps - 1):
            trainer.log_evaluation(step, result)
        done = stop + 1
        if intermediate_store_frequency > 0 and stop > 0 and stop % intermediate_store_frequency == 0:
            if on_intermediate is not None:
                on_intermediate(stop, trainer.layer.weights.numpy(), trainer.layer.biases.numpy())
    trainer.close()
    accuracy, count, wrong = trainer.test(sets["testing"], class_count)
    return TrainResult(
        weights=trainer.layer.weights.numpy(),
        biases=trainer.layer.biases.numpy(),
        test_accuracy=accuracy,
        test_count=count,
        misclassified=wrong,
    )
