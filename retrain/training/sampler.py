"""The one class-balanced sampler: every batch of training, validation and test images is drawn here.

retrain.py's draws: a class uniformly among the classes that have images in the set,
then ``randint(0, 2**27) % class size`` of its images, with replacement; a batch size
of -1 takes the whole set, class by class in list order. Written in TensorFlow ops on a
tf.random.Generator, so the same draws run inside compiled training loops and eagerly.
"""

import numpy as np
import tensorflow as tf

from retrain import config as config_lib

# Draws are `randint(0, 2**27) % class size`, as retrain.py drew them.
_INDEX_RANGE = config_lib.MAX_NUM_IMAGES_PER_CLASS + 1

# A batch size meaning "every image of the set".
ALL = -1


class ClassBalancedSampler:
    """Draws rows of a set of labelled examples.

    Attributes:
      size: how many examples the set holds.
      class_order: int64 [size], the rows sorted by class (stable): what ALL takes.
    """

    def __init__(self, labels: np.ndarray, class_count: int):
        """labels: int [n] class indices below class_count."""
        labels = np.asarray(labels, np.int64)
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=class_count)
        self.size = len(labels)
        self.class_order = order
        self._order = tf.constant(order.astype(np.int64))
        self._starts = tf.constant(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))
        self._counts = tf.constant(counts.astype(np.int64))
        self._classes = tf.constant(np.flatnonzero(counts).astype(np.int64))

    def rows(self, generator: tf.random.Generator, batch_size: int) -> tf.Tensor:
        """int64 [batch_size] rows drawn class-balanced with replacement; batch_size ALL (< 0):
        every row, in class order. Graph-safe; the draws advance generator."""
        if batch_size < 0:
            return self._order
        pick = generator.uniform([batch_size], 0, tf.size(self._classes, tf.int64), dtype=tf.int64)
        classes = tf.gather(self._classes, pick)
        draws = generator.uniform([batch_size], 0, _INDEX_RANGE, dtype=tf.int64)
        return tf.gather(self._order, tf.gather(self._starts, classes) + draws % tf.gather(self._counts, classes))
