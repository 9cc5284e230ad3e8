"""The trained weights' checkpoint (--checkpoint_path): the final layer, and a tuned module's variables.

The final layer's weights and biases as ``final_weights`` and ``final_biases``. A module
fine-tuned in the run (--fine_tune) has weights of the run's own, so its variables go
in too, under ``module``; an untuned module's are in the module itself, and every
export is made from module + layer, so reloading it for each one (as retrain.py did
through its checkpoint) is never needed.
"""

import numpy as np
import tensorflow as tf

from retrain.data import storage


def write_checkpoint(path: str, weights: np.ndarray, biases: np.ndarray, module=None) -> None:
    """Saves float32 weights [dim, classes] and biases [classes] (and module, a trackable
    object holding variables, when given) as a checkpoint with prefix path."""
    parts = {"final_weights": tf.Variable(weights, name="final_weights"),
             "final_biases": tf.Variable(biases, name="final_biases")}
    if module is not None:
        parts["module"] = module
    storage.makedirs(storage.dirname(path) or ".")
    tf.train.Checkpoint(**parts).write(path)


def write(path: str, model, options=None) -> None:
    """The checkpoint of a TrainedModel: its final layer, and its module when tuned in the run."""
    del options  # Nothing to choose.
    write_checkpoint(path, model.weights, model.biases, model.module.module if model.module.tuned else None)
