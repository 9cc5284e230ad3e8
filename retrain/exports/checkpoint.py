"""The final layer's checkpoint (--checkpoint_path): its weights and biases as a TF checkpoint.

Only the layer: the module's weights are in the module itself, and every export is
made from module + layer, so reloading the module for each one (as retrain.py did
through its checkpoint) is never needed.
"""

import numpy as np
import tensorflow as tf

from retrain.data import storage


def write_checkpoint(path: str, weights: np.ndarray, biases: np.ndarray) -> None:
    """Saves float32 weights [dim, classes] and biases [classes] as a checkpoint with prefix path."""
    layer = tf.train.Checkpoint(
        final_weights=tf.Variable(weights, name="final_weights"),
        final_biases=tf.Variable(biases, name="final_biases"),
    )
    storage.makedirs(storage.dirname(path) or ".")
    layer.write(path)


def write(path: str, model, options=None) -> None:
    """The checkpoint of a TrainedModel's final layer."""
    del options  # Nothing to choose.
    write_checkpoint(path, model.weights, model.biases)
