"""Random distortions of training images, with retrain.py's mathematics.

For a module input of height x width, one distorted sample of an image is:

1. the decoded image scaled to [0, 1];
2. resized (TF1 bilinear, aspect ratio ignored) to int(s * height) x int(s * width), with
   s = (1 + random_crop / 100) * U[1, 1 + random_scale / 100);
3. a height x width window cut at a uniformly random offset: so crop and scale only
   zoom in, and a crop of c% keeps 1 / (1 + c / 100) of each side (retrain.py's help
   said "50% crops half", which its code never did);
4. mirrored left-right with probability 1/2 when flip_left_right is set;
5. multiplied by U[1 - random_brightness / 100, 1 + random_brightness / 100), without
   clipping.

Every random draw comes from a seed given per sample (stateless ops), so a sample is a
pure function of (image, seed): seeded runs repeat exactly, and distorted copies can be
cached.
"""

import zlib

import numpy as np
import tensorflow as tf

from retrain.config import DistortionConfig
from retrain.data.images import resize_bilinear_v1


class Distorter:
    """Distorts one decoded image into a module input of height x width."""

    def __init__(self, config: DistortionConfig, height: int, width: int):
        self.config = config
        self.height = height
        self.width = width
        self._distort = tf.function(
            self.distort_graph,
            input_signature=[tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([2], tf.int64)],
            autograph=False,
        )

    def __call__(self, pixels: np.ndarray, seed) -> np.ndarray:
        """uint8 [h, w, 3] and an int64 [2] seed -> float32 [height, width, 3] (about [0, 1])."""
        return self._distort(pixels, tf.constant(seed, tf.int64)).numpy()

    def distort_graph(self, pixels, seed):
        """uint8 [h, w, 3] upright pixels and an int64 [2] seed -> float32 [height, width, 3]
        (about [0, 1]), as graph code (tf.data pipelines call it too)."""
        config = self.config
        scale_seed, crop_seed, flip_seed, brightness_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 4)
        )
        image = tf.image.convert_image_dtype(pixels, tf.float32)
        margin_scale = 1.0 + config.random_crop / 100.0
        resize_scale = tf.random.stateless_uniform(
            [], scale_seed, minval=1.0, maxval=1.0 + config.random_scale / 100.0
        )
        scale = margin_scale * resize_scale
        size = tf.cast(tf.constant([self.height, self.width], tf.float32) * scale, tf.int32)
        precropped = resize_bilinear_v1(image[tf.newaxis], size[0], size[1])[0]
        cropped = tf.image.stateless_random_crop(precropped, [self.height, self.width, 3], seed=crop_seed)
        if config.flip_left_right:
            cropped = tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)
        brightness = tf.random.stateless_uniform(
            [],
            brightness_seed,
            minval=1.0 - config.random_brightness / 100.0,
            maxval=1.0 + config.random_brightness / 100.0,
        )
        return cropped * brightness


def settings_tag(config: DistortionConfig) -> str:
    """A file-name part naming the settings, so copies made with others are never reused."""
    return (
        f"distorted-flip{int(config.flip_left_right)}-crop{config.random_crop}"
        f"-scale{config.random_scale}-brightness{config.random_brightness}"
    )


def copy_seed(relative_path: str, copy_index: int) -> tuple[int, int]:
    """The fixed seed of distorted copy copy_index of an image (its path under image_dir)."""
    return zlib.crc32(relative_path.encode("utf-8")), copy_index
