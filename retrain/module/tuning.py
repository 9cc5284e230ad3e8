"""What fine-tuning needs of a module: TF-Hub's reusable SavedModel API, in a copy of its own.

A module can be trained when it is a TF2 SavedModel that is callable on images, lists
its ``trainable_variables`` and (usually) takes ``training=``: what TF-Hub calls the
reusable SavedModel API, which ``tf.saved_model.load`` / ``hub.load`` restore. It is
called with ``training=False`` so that batch normalisation keeps its moving statistics
(in training mode it would use each small batch's, which wrecks what the module
learned). TF1 Hub-format modules, plain SavedModels without the API and the frozen
graphs of the older retrain.py have nothing to train: they are refused here, with why
and what to use, before any long work.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

from retrain.errors import UserError
from retrain.module import inception_2015
from retrain.module.extractor import FeatureExtractor, feature_vectors

_USE_INSTEAD = (
    "use a TF2 feature-vector module that can be fine-tuned, e.g. "
    "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5, "
    "https://www.kaggle.com/models/google/mobilenet-v3/TensorFlow2/large-100-224-feature-vector/1 or "
    "https://www.kaggle.com/models/google/efficientnet-v2/TensorFlow2/imagenet21k-b0-feature-vector/1"
)


@dataclasses.dataclass
class TunableModule:
    """A module's own copy, ready to train.

    Attributes:
      extractor: the copy (its extract gives the features in inference mode, as
        exported); its variables are the ones trained.
      variables: its trainable variables.
      call: float32 [batch, height, width, 3] in [0, 1] -> float32 [batch, dim], batch
        normalisation in inference mode; differentiable (graph-safe).
    """

    extractor: FeatureExtractor
    variables: list[tf.Variable]
    call: Callable[[tf.Tensor], tf.Tensor]


def tunable_copy(extractor: FeatureExtractor) -> TunableModule:
    """The module loaded anew, to train, or UserError saying why it cannot be fine-tuned."""
    name = extractor.handle
    if extractor.cache_name == inception_2015.CACHE_NAME or name.endswith(".pb"):
        raise UserError(f"--fine_tune: {name} is a frozen graph, with nothing left to train; {_USE_INSTEAD}.")
    try:
        copy = extractor.loaded_anew()
    except ValueError as e:
        raise UserError(f"--fine_tune: {name} cannot be loaded for training ({e}); {_USE_INSTEAD}.") from e
    module = copy.module
    if not callable(module):
        raise UserError(
            f"--fine_tune: {name} is a TF1 Hub-format module (it has signatures, not a callable), which "
            f"TensorFlow 2 cannot fine-tune; {_USE_INSTEAD}."
        )
    variables = list(getattr(module, "trainable_variables", None) or [])
    if not variables:
        raise UserError(
            f"--fine_tune: {name} has no trainable variables (it is not a reusable SavedModel, which lists "
            f"them in trainable_variables); {_USE_INSTEAD}."
        )
    if _takes_training(module):
        def call(images):
            return feature_vectors(module(images, training=False))
    else:
        def call(images):
            return feature_vectors(module(images))
    return TunableModule(copy, variables, call)


def _takes_training(module) -> bool:
    """Whether the module's __call__ has a training argument (then it is given training=False)."""
    for concrete in getattr(module.__call__, "concrete_functions", []):
        args, kwargs = concrete.structured_input_signature
        if "training" in kwargs or len(args) > 1:
            return True
    return False

