"""Train the new softmax layer on bottlenecks, as retrain.py did, but fast.

Same model (training.head), loss (mean sparse softmax cross entropy), optimiser (plain
SGD), class-balanced sampling with replacement (training.sampler), evaluation schedule
and log lines. Differences: when the training examples are fixed bottlenecks in
memory, sampling and the steps between two evaluations run inside one compiled
TensorFlow loop; examples made anew at every step (live distortions) go one step per
call. Classes whose validation or test set is empty are left out of those instead of
crashing.
"""

import dataclasses
import datetime
import functools
from typing import Callable, Protocol

import numpy as np
import tensorflow as tf
from absl import logging

from retrain import config as config_lib
from retrain.cache.sets import BottleneckSet
from retrain.training import summaries as summaries_lib
from retrain.training.head import FinalLayer
from retrain.training.sampler import ClassBalancedSampler


class Examples(Protocol):
    """What training steps draw from (see training.modes).

    Attributes:
      labels: int64 [n] class indices.
      dim: the bottlenecks' length.
      features: float32 [n, dim] when the bottlenecks are fixed (cached), so whole
        blocks of steps can run in one compiled call; None when they are made anew
        for every draw.
    """

    labels: np.ndarray
    dim: int
    features: np.ndarray | None

    def bottlenecks(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), dim] for int [k] rows (made anew at each call when not fixed)."""


@dataclasses.dataclass
class TrainResult:
    """What training produced.

    Attributes:
      weights: float32 [dim, classes]; biases: float32 [classes].
      test_rows: int64 [k] rows of the testing set the final test evaluates, drawn
        after training as retrain.py drew them (--test_batch_size; -1: every row).
    """

    weights: np.ndarray
    biases: np.ndarray
    test_rows: np.ndarray


def _cross_entropy(logits, labels):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def _accuracy(logits, labels):
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))


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
    """Trains a FinalLayer on examples; see train() for the whole run."""

    def __init__(
        self,
        *,
        examples: Examples,
        validation: BottleneckSet,
        class_count: int,
        train_config: config_lib.TrainConfig,
        seed: int,
        summaries: summaries_lib.TrainingSummaries | None = None,
    ):
        self.config = train_config
        self.examples = examples
        self.class_count = class_count
        self.layer = FinalLayer(examples.dim, class_count, seed)
        self.generator = tf.random.Generator.from_seed(seed)
        self.training = ClassBalancedSampler(examples.labels, class_count)
        self.validation = ClassBalancedSampler(validation.labels, class_count)
        self._validation_features = tf.constant(validation.features)
        self._validation_labels = tf.constant(validation.labels)
        self._fixed = examples.features is not None
        if self._fixed:
            self._training_features = tf.constant(examples.features)
            self._training_labels = tf.constant(examples.labels)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.learning_rate = tf.constant(train_config.learning_rate, tf.float32)
        self.summaries = summaries

    def _apply_step(self, features, labels) -> None:
        """One SGD step on the mean cross entropy; the gradient written out, not taped.

        The cross-entropy kernel returns each row's gradient (softmax - one-hot) with
        its loss, so a step is two small products: a quarter of a taped step's ops.
        """
        logits = self.layer(features)
        losses, backprop = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=logits, labels=labels)
        loss = tf.reduce_mean(losses)
        d_logits = backprop / tf.cast(tf.shape(backprop)[0], tf.float32)
        if self.summaries is not None:
            self.summaries.step(loss, _accuracy(logits, labels), self.step)
        self.layer.weights_t.assign_sub(self.learning_rate * tf.matmul(d_logits, features, transpose_a=True))
        self.layer.biases.assign_sub(self.learning_rate * tf.reduce_sum(d_logits, axis=0))
        self.step.assign_add(1)

    @tf.function(reduce_retracing=True, autograph=False)
    def _step_on(self, features, labels):
        """One step on a batch made outside (examples that are not fixed)."""
        self._apply_step(features, labels)

    def _sample_fixed(self):
        """A training batch of fixed examples, drawn in graph code: (float32 [batch, dim], int64 [batch])."""
        rows = self.training.rows(self.generator, self.config.train_batch_size)
        return tf.gather(self._training_features, rows), tf.gather(self._training_labels, rows)

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

        def evaluate(features, labels, step, steps, rows, written):
            result = self._evaluation(features, labels)
            row = tf.stack([tf.cast(result.get(name, -1), tf.float32) for name in EVALUATION_FIELDS])
            return steps.write(written, step), rows.write(written, row), written + 1

        def body(i, steps, rows, written):
            features, labels = self._sample_fixed()
            features.set_shape([None, dim])
            self._apply_step(features, labels)
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
        if self.summaries is not None:
            self.summaries.layer(self.layer.weights, self.layer.biases, logits, step)
        if self.validation.size == 0:
            return result
        rows = self.validation.rows(self.generator, self.config.validation_batch_size)
        val_labels = tf.gather(self._validation_labels, rows)
        val_logits = self.layer(tf.gather(self._validation_features, rows))
        result["validation_accuracy"] = _accuracy(val_logits, val_labels)
        result["validation_cross_entropy"] = _cross_entropy(val_logits, val_labels)
        result["validation_count"] = tf.size(val_labels)
        if self.summaries is not None:
            self.summaries.validation(result["validation_accuracy"], result["validation_cross_entropy"], step)
        return result

    def run_steps(self, count: int, eval_interval: int, last_step: int) -> list[tuple[int, dict]]:
        """Runs count steps; returns (step, evaluation) for each step evaluated on the way.

        Steps evaluated: s % eval_interval == 0 or s == last_step (0-based). An
        evaluation is a dict of numbers (see _evaluation). Steps on fixed examples run
        in one call into TensorFlow; steps on examples made anew, one call each.
        """
        with summaries_lib.writing(self.summaries):
            if self._fixed:
                steps, rows = self._run_block(
                    tf.constant(count), tf.constant(eval_interval, tf.int64), tf.constant(last_step, tf.int64)
                )
                return [(int(step), _evaluation_dict(row)) for step, row in zip(steps.numpy(), rows.numpy())]
            found = []
            for _ in range(count):
                rows = self.training.rows(self.generator, self.config.train_batch_size).numpy()
                features = tf.constant(np.asarray(self.examples.bottlenecks(rows), np.float32))
                labels = tf.constant(self.examples.labels[rows])
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

    def test_rows(self, testing: BottleneckSet) -> np.ndarray:
        """int64 rows of testing for the final test: test_batch_size draws (-1: all)."""
        if len(testing) == 0:
            return np.zeros(0, np.int64)
        sampler = ClassBalancedSampler(testing.labels, self.class_count)
        return sampler.rows(self.generator, self.config.test_batch_size).numpy()


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
    examples: Examples,
    validation: BottleneckSet,
    testing: BottleneckSet,
    class_count: int,
    train_config: config_lib.TrainConfig,
    seed: int,
    summaries_dir: str = "",
    intermediate_store_frequency: int = 0,
    on_intermediate: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
) -> TrainResult:
    """Trains the final layer, logging as retrain.py did, and draws the final test's rows.

    Args:
      examples: what training steps draw from (fixed bottlenecks, or made anew).
      validation: the validation bottlenecks, sampled at each evaluation.
      testing: the test bottlenecks the final test's rows are drawn from.
      class_count: number of classes; labels are below it.
      train_config: steps, learning rate, batch sizes, evaluation interval.
      seed: seeds the initial weights and all sampling.
      summaries_dir: where to write TensorBoard 'train' and 'validation' events; '' for none.
      intermediate_store_frequency: call on_intermediate every this many steps (0: never).
      on_intermediate: called with (step, weights [dim, classes], biases [classes]).

    Returns:
      The trained weights and the rows of the final test.
    """
    summaries = summaries_lib.open_for_training(summaries_dir)
    trainer = Trainer(
        examples=examples,
        validation=validation,
        class_count=class_count,
        train_config=train_config,
        seed=seed,
        summaries=summaries,
    )
    if len(validation) == 0:
        logging.warning("No validation images: validation accuracy is not reported.")
    elif train_config.validation_batch_size >= 0:
        logging.info("Each validation accuracy below is on %d draws with replacement from %d validation images.",
                     train_config.validation_batch_size, len(validation))
    steps = train_config.how_many_training_steps
    eval_interval = train_config.eval_step_interval
    done = 0
    try:
        for stop in training_schedule(steps, eval_interval, intermediate_store_frequency):
            for step, result in trainer.run_steps(stop + 1 - done, eval_interval, steps - 1):
                trainer.log_evaluation(step, result)
            done = stop + 1
            if intermediate_store_frequency > 0 and stop > 0 and stop % intermediate_store_frequency == 0:
                if on_intermediate is not None:
                    on_intermediate(stop, trainer.layer.weights.numpy(), trainer.layer.biases.numpy())
    finally:
        if summaries is not None:
            summaries.close()
    return TrainResult(
        weights=trainer.layer.weights.numpy(),
        biases=trainer.layer.biases.numpy(),
        test_rows=trainer.test_rows(testing),
    )
