"""Mode "fine_tune" (--fine_tune): the head first, as always, then the module and the head together.

1. The head trains on the cached bottlenecks exactly as retrain.py's does (so the module
   never sees gradients from a random head: with a head at zero they would be zero).
2. A copy of the module (module.tuning: TF-Hub's reusable SavedModel API) and the head
   train end to end on decoded images, streamed through tf.data in an order drawn
   from the seed, with the distortion flags applied live when given; batch
   normalisation stays in inference mode. SGD with momentum, L2 weight decay on
   kernels, label smoothing, and a learning rate warming up over the first epoch then
   decaying along a cosine (config.FineTuneConfig holds the defaults and why).
3. After every epoch the tuned model is measured on the validation images; the best
   epoch is kept. An epoch must beat the head alone in accuracy without a higher cross
   entropy (so one lucky image of a small validation set does not count); when none
   does, the head is kept.

The bottleneck cache stays the original module's: the copy has no fingerprint, so
nothing keyed by the original (cache entries, the frozen module) ever serves it, and
everything measured after (final test, calibration, report, parity) decodes images.
"""

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf
from absl import logging

from retrain.cache import plan
from retrain.config import FineTuneConfig, RetrainConfig
from retrain.data import distortions, module_inputs
from retrain.model import TrainedModel
from retrain.module import devices, tuning
from retrain.module.frozen import FrozenModule
from retrain.runtime.progress import Progress
from retrain.scoring import softmax
from retrain.training import cached, summaries
from retrain.training.modes import ModeContext, TrainingData


@dataclasses.dataclass
class EpochResult:
    """One epoch: train_accuracy and loss (means over the epoch's images), validation_accuracy
    in [0, 1] and validation_loss (mean cross entropy), images trained on, seconds."""

    epoch: int
    train_accuracy: float
    loss: float
    validation_accuracy: float
    validation_loss: float
    images: int
    seconds: float


@dataclasses.dataclass
class FineTuneReport:
    """What fine-tuning did.

    Attributes:
      head_validation_accuracy, head_validation_loss: the head alone, on the validation images.
      epochs: each epoch's figures.
      kept_epoch: the epoch whose weights the model has (1-based), or 0 for the head alone.
      validation_count: validation images each accuracy is measured on.
    """

    head_validation_accuracy: float
    head_validation_loss: float
    epochs: list[EpochResult]
    kept_epoch: int
    validation_count: int


def training_images(config: RetrainConfig) -> plan.TrainingImages:
    del config  # The head trains on each training image's plain bottleneck, as in retrain.py.
    return plan.PLAIN


def training_data(context: ModeContext) -> TrainingData:
    """The cached mode's data; the module's copy to train is loaded (or refused) first."""
    tunable = tuning.tunable_copy(context.extractor)  # Refused here, before any long work.
    data = cached.training_data(context)
    data.mode_state = tunable
    return data


def refine(model: TrainedModel, context: ModeContext, data: TrainingData) -> tuple[TrainedModel, FineTuneReport | None]:
    """(The model with its module and head tuned on images, or model itself when tuning did
    not help; what fine-tuning did, or None when it could not be checked and was skipped)."""
    config = context.config
    tunable: tuning.TunableModule = data.mode_state
    validation = data.validation
    if not len(validation):
        logging.warning("No validation images: fine-tuning could not be checked against the head, so it is "
                        "skipped and the head alone is kept.")
        return model, None
    head_accuracy, head_loss = _measure(model, validation)
    logging.info("The head alone: validation accuracy = %.1f%% (N=%d), cross entropy = %.4f.",
                 head_accuracy * 100, len(validation), head_loss)
    tuner = Tuner(tunable, model.weights, model.biases, config.fine_tune,
                  steps_per_epoch=math.ceil(len(data.examples) / config.fine_tune.batch_size))
    logging.info(
        "Fine-tuning the module (%d trainable variables, %s values) and the head on %d training images: %d epochs "
        "of batches of %d, learning rate %g (%s), momentum %g, weight decay %g, label smoothing %g.",
        len(tunable.variables), f"{sum(int(np.prod(v.shape)) for v in tunable.variables):,}", len(data.examples),
        config.fine_tune.epochs, config.fine_tune.batch_size, config.fine_tune.learning_rate,
        config.fine_tune.schedule, config.fine_tune.momentum, config.fine_tune.weight_decay,
        config.fine_tune.label_smoothing,
    )
    tuned = dataclasses.replace(model, frozen_module=FrozenModule(tunable.extractor))
    distort = None
    if config.distortions.enabled:
        distort = distortions.Distorter(config.distortions, tunable.extractor.height, tunable.extractor.width).distort_graph
    results, best = [], None
    for epoch in range(1, config.fine_tune.epochs + 1):
        start = time.perf_counter()
        batches = module_inputs.shuffled_batches(
            data.examples.image_paths, data.examples.labels, preprocessing=model.preprocessing,
            batch_size=config.fine_tune.batch_size, seed=(context.seed, epoch), distort=distort,
        )
        train_accuracy, loss, images = tuner.run_epoch(batches, len(data.examples),
                                                       f"Fine-tuning epoch {epoch}/{config.fine_tune.epochs}")
        tuned = dataclasses.replace(tuned, weights=tuner.head_weights, biases=tuner.head_biases)
        result = EpochResult(epoch, train_accuracy, loss, *_measure(tuned, validation), images,
                             time.perf_counter() - start)
        results.append(result)
        _log_epoch(result, config.fine_tune.epochs, len(validation), len(data.examples))
        if config.output.summaries_dir:
            summaries.write_fine_tune_epoch(config.output.summaries_dir, epoch, train_accuracy, loss,
                                            result.validation_accuracy)
        to_beat = best or EpochResult(0, 0.0, 0.0, head_accuracy, head_loss, 0, 0.0)
        if result.validation_accuracy > to_beat.validation_accuracy and result.validation_loss <= to_beat.validation_loss:
            best = result
            tuner.remember()
    report = FineTuneReport(head_accuracy, head_loss, results, best.epoch if best else 0, len(validation))
    if best is None:
        logging.info(
            "Fine-tuning did not beat the head on validation (the head %.1f%%, the best epoch %.1f%%): "
            "the head alone is kept.", head_accuracy * 100, max(r.validation_accuracy for r in results) * 100,
        )
        return model, report
    tuner.restore()
    logging.info("Fine-tuning keeps epoch %d: validation accuracy %.1f%% against the head's %.1f%%.",
                 best.epoch, best.validation_accuracy * 100, head_accuracy * 100)
    return dataclasses.replace(tuned, weights=tuner.head_weights, biases=tuner.head_biases), report


def _measure(model: TrainedModel, images) -> tuple[float, float]:
    """(accuracy, mean cross entropy) of model on a set of images."""
    logits = model.logits(images)
    probabilities = softmax(logits)[np.arange(len(images)), images.labels]
    loss = float(-np.mean(np.log(np.maximum(probabilities, 1e-30))))
    return float(np.mean(logits.argmax(axis=1) == images.labels)), loss


def _log_epoch(result: EpochResult, epochs: int, validation_count: int, training_count: int) -> None:
    left_out = f"; {training_count - result.images} images TensorFlow cannot decode left out" if (
        result.images < training_count) else ""
    logging.info(
        "Fine-tuning epoch %d/%d: train accuracy = %.1f%%, cross entropy = %.4f; validation accuracy = %.1f%% "
        "(N=%d); %.0f s%s", result.epoch, epochs, result.train_accuracy * 100, result.loss,
        result.validation_accuracy * 100, validation_count, result.seconds, left_out,
    )


class Tuner:
    """SGD with momentum on a module's trainable variables and a head, from a trained head.

    The learning rate follows FineTuneConfig.schedule over epochs x steps_per_epoch
    steps; weight decay (L2, added to the gradient) applies to kernels and weight
    matrices (rank >= 2), not to biases or normalisation scales.
    """

    def __init__(self, tunable: tuning.TunableModule, weights: np.ndarray, biases: np.ndarray,
                 config: FineTuneConfig, steps_per_epoch: int):
        self.config = config
        self.call = tunable.call
        self._head_weights = tf.Variable(np.asarray(weights, np.float32), name="final_weights")
        self._head_biases = tf.Variable(np.asarray(biases, np.float32), name="final_biases")
        self.variables = list(tunable.variables) + [self._head_weights, self._head_biases]
        self._velocity = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self._decays = [v.shape.rank is not None and v.shape.rank >= 2 for v in self.variables]
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._total_steps = max(1, config.epochs * steps_per_epoch)
        self._warmup_steps = steps_per_epoch if config.schedule == "cosine" and config.epochs > 1 else 0
        self._remembered: list[np.ndarray] | None = None
        self.devices = devices.parallel_devices()
        if len(self.devices) > 1:
            logging.info("Fine-tuning splits each batch across %d devices: %s", len(self.devices),
                         ", ".join(self.devices))

    @property
    def head_weights(self) -> np.ndarray:
        return self._head_weights.numpy()

    @property
    def head_biases(self) -> np.ndarray:
        return self._head_biases.numpy()

    def learning_rate(self, step) -> tf.Tensor:
        """The rate at step (0-based, a scalar tensor): constant, or warm-up then cosine decay to 0."""
        peak = tf.constant(self.config.learning_rate, tf.float32)
        if self.config.schedule == "constant":
            return peak
        step = tf.cast(step, tf.float32)
        warmup = float(self._warmup_steps)
        decaying = (step - warmup) / max(1.0, float(self._total_steps) - warmup)
        cosine = 0.5 * peak * (1.0 + tf.cos(math.pi * tf.minimum(decaying, 1.0)))
        return tf.where(step < warmup, peak * (step + 1.0) / max(1.0, warmup), cosine)

    @tf.function(reduce_retracing=True, autograph=False)
    def _train_step(self, images, labels):
        """One step on a batch: float32 [b, height, width, 3], int64 [b] -> (loss summed over
        the batch, correct answers). With several devices (module.devices), each takes a
        slice of the batch and their gradients are summed."""
        count = tf.shape(labels)[0]
        if len(self.devices) < 2:
            loss, correct, gradients = self._slice_step(images, labels, count)
        else:
            parts = len(self.devices)
            bounds = tf.cast(tf.round(tf.linspace(0.0, tf.cast(count, tf.float32), parts + 1)), tf.int32)
            loss = correct = 0.0
            gradients = [None] * len(self.variables)
            for i, device in enumerate(self.devices):
                with tf.device(device):
                    part = self._slice_step(images[bounds[i]:bounds[i + 1]], labels[bounds[i]:bounds[i + 1]], count)
                loss, correct = loss + part[0], correct + part[1]
                gradients = [g if p is None else (p if g is None else g + p) for g, p in zip(gradients, part[2])]
        self._apply(gradients)
        return loss * tf.cast(count, tf.float32), correct

    def _slice_step(self, images, labels, count):
        """(mean loss share, correct answers, gradients) of a slice of a batch of count images:
        its summed loss divided by count, so the slices' shares add up to the batch's mean."""
        classes = tf.shape(self._head_biases)[0]
        smoothing = self.config.label_smoothing
        targets = tf.one_hot(labels, classes) * (1.0 - smoothing) + smoothing / tf.cast(classes, tf.float32)
        with tf.GradientTape() as tape:
            logits = tf.matmul(self.call(images), self._head_weights) + self._head_biases
            losses = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
            loss = tf.reduce_sum(losses) / tf.cast(count, tf.float32)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
        return loss, correct, tape.gradient(loss, self.variables)

    def _apply(self, gradients) -> None:
        """SGD with momentum (and L2 decay on kernels) at the step's learning rate."""
        rate = self.learning_rate(self._step)
        for variable, gradient, velocity, decays in zip(self.variables, gradients, self._velocity, self._decays):
            if gradient is None:
                continue  # Not on the path from the images to the features.
            gradient = tf.convert_to_tensor(gradient)
            if decays and self.config.weight_decay:
                gradient += self.config.weight_decay * variable
            velocity.assign(self.config.momentum * velocity + gradient)
            variable.assign_sub(rate * velocity)
        self._step.assign_add(1)

    def run_epoch(self, batches: tf.data.Dataset, expected: int, description: str) -> tuple[float, float, int]:
        """Trains on every batch; (train accuracy, mean loss, images trained on)."""
        loss_sum = correct = 0.0
        seen = 0
        with Progress(expected, description) as progress:
            for images, labels in batches:
                batch_loss, batch_correct = self._train_step(images, labels)
                count = int(labels.shape[0])
                loss_sum += float(batch_loss)
                correct += float(batch_correct)
                seen += count
                progress.update(count)
        return (correct / seen if seen else 0.0), (loss_sum / seen if seen else float("nan")), seen

    def remember(self) -> None:
        """Keeps the current weights in memory (the best epoch so far)."""
        self._remembered = [v.numpy() for v in self.variables]

    def restore(self) -> None:
        """Puts back the weights remember() kept."""
        for variable, value in zip(self.variables, self._remembered):
            variable.assign(value)
