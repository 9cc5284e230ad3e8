"""The flags that say how the head (and, with --fine_tune, the module) is trained, and calibrated.

Shared by ``retrain`` and ``retrain-compare``, so that a comparison trains each module
exactly as ``retrain`` would with the same words; each tool defines them in its own
flags (TrainingFlags) beside its own.
"""

from absl import flags

from retrain import config as config_lib
from retrain.commands import cli

_D = config_lib.RetrainConfig()
_F = _D.fine_tune


class TrainingFlags:
    """These flags, defined in one command's FlagValues (listed under this module in --help)."""

    def __init__(self, flag_values: flags.FlagValues):
        own = dict(flag_values=flag_values, module_name=__name__)
        self.how_many_training_steps = flags.DEFINE_integer(
            "how_many_training_steps", _D.train.how_many_training_steps, "How many training steps to run before ending.",
            **own)
        self.learning_rate = flags.DEFINE_float(
            "learning_rate", _D.train.learning_rate, "How large a learning rate to use when training.", **own)
        self.eval_step_interval = flags.DEFINE_integer(
            "eval_step_interval", _D.train.eval_step_interval, "How often to evaluate the training results.", **own)
        self.train_batch_size = flags.DEFINE_integer(
            "train_batch_size", _D.train.train_batch_size,
            "How many images to train on at a time. -1 uses the whole training set at every step.", **own)
        self.test_batch_size = flags.DEFINE_integer(
            "test_batch_size", _D.train.test_batch_size,
            "How many images to test on. This test set is only used once, to evaluate the final "
            "accuracy of the model after training completes. A value of -1 causes the entire test "
            "set to be used, which leads to more stable results across runs.", **own)
        self.validation_batch_size = flags.DEFINE_integer(
            "validation_batch_size", _D.train.validation_batch_size,
            "How many images to use in an evaluation batch. This validation set is used much more "
            "often than the test set, and is an early indicator of how accurate the model is during "
            "training. A value of -1 causes the entire validation set to be used, which leads to "
            "more stable results across training iterations, but may be slower on large training sets.", **own)
        self.random_seed = flags.DEFINE_integer(
            "random_seed", _D.train.random_seed,
            "Seed for the initial weights and the sampling of training, validation and test "
            "batches. Unset: a new seed each run, printed in the log so the run can be repeated.", **own)
        self.unknown_threshold = flags.DEFINE_string(
            "unknown_threshold", "auto",
            "The calibrated top score below which the model answers 'unknown' (label-image --unknown, "
            "the SavedModel's and TFLite model's outputs). auto: chosen on the validation images, the "
            "lowest score from which the answered images reach --unknown_target_precision accuracy, "
            "and at least the score that answers that share of them. Or a number in [0, 1].", **own)
        self.unknown_target_precision = flags.DEFINE_float(
            "unknown_target_precision", _D.unknown_target_precision,
            "With --unknown_threshold auto: the accuracy (0-1) the images answered should reach on validation.", **own)
        self.fine_tune = flags.DEFINE_boolean(
            "fine_tune", _F.enabled,
            "After the head, train the module too (with the head, on decoded images, batch norm in inference "
            "mode, distortion flags applied live), keeping the epoch that is best on validation, or the head "
            "alone when none beats it. Needs a TF2 module with trainable variables (TF-Hub's reusable "
            "SavedModels); every output then carries the tuned module.", **own)
        self.fine_tune_epochs = flags.DEFINE_integer(
            "fine_tune_epochs", _F.epochs, "With --fine_tune: passes over the training images.", **own)
        self.fine_tune_learning_rate = flags.DEFINE_float(
            "fine_tune_learning_rate", _F.learning_rate,
            "With --fine_tune: the peak learning rate of SGD with momentum (module and head).", **own)
        self.fine_tune_schedule = flags.DEFINE_enum(
            "fine_tune_schedule", _F.schedule, list(config_lib.FINE_TUNE_SCHEDULES),
            "With --fine_tune: cosine (a linear warm-up over the first epoch, then a cosine decay to 0) or constant.",
            **own)
        self.fine_tune_batch_size = flags.DEFINE_integer(
            "fine_tune_batch_size", _F.batch_size, "With --fine_tune: images per step.", **own)
        self.fine_tune_momentum = flags.DEFINE_float(
            "fine_tune_momentum", _F.momentum, "With --fine_tune: SGD's momentum, in [0, 1).", **own)
        self.fine_tune_weight_decay = flags.DEFINE_float(
            "fine_tune_weight_decay", _F.weight_decay,
            "With --fine_tune: L2 weight decay on kernels and weight matrices (not biases or normalisation).", **own)
        self.fine_tune_label_smoothing = flags.DEFINE_float(
            "fine_tune_label_smoothing", _F.label_smoothing,
            "With --fine_tune: label smoothing of the cross entropy, in [0, 1).", **own)

    def check(self, distorted_copies: int = 0) -> None:
        """Raises cli.UsageError, naming the flag, for values that cannot work."""
        for holder in (self.how_many_training_steps, self.eval_step_interval):
            if holder.value <= 0:
                raise cli.UsageError(f"--{holder.name} must be positive, not {holder.value}")
        for holder in (self.train_batch_size, self.validation_batch_size, self.test_batch_size):
            if holder.value == 0 or holder.value < -1:
                raise cli.UsageError(f"--{holder.name} must be positive or -1 (all images), not {holder.value}")
        if not self.learning_rate.value > 0:
            raise cli.UsageError(f"--learning_rate must be positive, not {self.learning_rate.value}")
        for holder in (self.fine_tune_epochs, self.fine_tune_batch_size, self.fine_tune_learning_rate):
            if not holder.value > 0:
                raise cli.UsageError(f"--{holder.name} must be positive, not {holder.value}")
        for holder in (self.fine_tune_momentum, self.fine_tune_label_smoothing):
            if not 0.0 <= holder.value < 1.0:
                raise cli.UsageError(f"--{holder.name} must be in [0, 1), not {holder.value}")
        if self.fine_tune_weight_decay.value < 0:
            raise cli.UsageError(
                f"--fine_tune_weight_decay must be 0 or positive, not {self.fine_tune_weight_decay.value}")
        if self.fine_tune.value and distorted_copies:
            raise cli.UsageError("--distorted_copies does not go with --fine_tune: while the module trains, the "
                                 "distortion flags are applied to the images live")
        self._unknown_threshold()
        if not 0.0 < self.unknown_target_precision.value <= 1.0:
            raise cli.UsageError(
                f"--unknown_target_precision must be in (0, 1], not {self.unknown_target_precision.value}")

    def _unknown_threshold(self) -> float | None:
        """--unknown_threshold as a number, or None for auto."""
        text = self.unknown_threshold.value.strip().lower()
        if text == "auto":
            return None
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 1.0:
            raise cli.UsageError(
                f"--unknown_threshold must be auto or a number in [0, 1], not {self.unknown_threshold.value}")
        return value

    def settings(self, distorted_copies: int = 0) -> dict:
        """The RetrainConfig fields these flags set, checked (see check())."""
        self.check(distorted_copies)
        return dict(
            unknown_threshold=self._unknown_threshold(),
            unknown_target_precision=self.unknown_target_precision.value,
            train=config_lib.TrainConfig(
                how_many_training_steps=self.how_many_training_steps.value,
                learning_rate=self.learning_rate.value,
                train_batch_size=self.train_batch_size.value,
                eval_step_interval=self.eval_step_interval.value,
                validation_batch_size=self.validation_batch_size.value,
                test_batch_size=self.test_batch_size.value,
                random_seed=self.random_seed.value,
            ),
            fine_tune=config_lib.FineTuneConfig(
                enabled=self.fine_tune.value,
                epochs=self.fine_tune_epochs.value,
                learning_rate=self.fine_tune_learning_rate.value,
                schedule=self.fine_tune_schedule.value,
                batch_size=self.fine_tune_batch_size.value,
                momentum=self.fine_tune_momentum.value,
                weight_decay=self.fine_tune_weight_decay.value,
                label_smoothing=self.fine_tune_label_smoothing.value,
            ),
        )
