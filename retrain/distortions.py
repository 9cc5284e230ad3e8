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

import concurrent.futures
import functools
import os
import zlib

import numpy as np
import tensorflow as tf
from absl import logging

from retrain import batching
from retrain.config import DistortionConfig
from retrain.images import read_image, resize_bilinear_v1
from retrain.progress import Progress


class Distorter:
    """Distorts one decoded image into a module input of height x width."""

    def __init__(self, config: DistortionConfig, height: int, width: int):
        self.config = config
        self.height = height
        self.width = width
        self._distort = tf.function(
            self._distort_graph,
            input_signature=[tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([2], tf.int64)],
            autograph=False,
        )

    def __call__(self, pixels: np.ndarray, seed) -> np.ndarray:
        """uint8 [h, w, 3] and an int64 [2] seed -> float32 [height, width, 3] (about [0, 1])."""
        return self._distort(pixels, tf.constant(seed, tf.int64)).numpy()

    def _distort_graph(self, pixels, seed):
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


def memory_budget_bytes() -> int:
    """How much decoded training imagery to keep in memory: a quarter of the RAM."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 2**31


def decode_training_images(
    paths: list[str], *, budget_bytes: int, workers: int
) -> tuple[list[np.ndarray | str], list[int], list[tuple[str, str]]]:
    """Decodes every training image once, keeping the pixels while they fit the budget.

    Returns:
      (per usable image its uint8 [h, w, 3] pixels, or its path once the budget is
      spent, to be decoded again when drawn; the positions of those images in
      paths; [(path, reason)] for files that are not readable images).
    """
    kept, positions, failed = [], [], []
    used = 0

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        with Progress(len(paths), "Decoding training images") as progress:
            for position, (pixels, error) in enumerate(pool.map(functools.partial(batching.load_or_error, read_image), paths)):
                progress.update()
                if error is not None:
                    logging.warning("Skipping %s", error)
                    failed.append((paths[position], error))
                    continue
                used += pixels.nbytes
                kept.append(pixels if used <= budget_bytes else paths[position])
                positions.append(position)
    return kept, positions, failed


class DistortedBatches:
    """Training batches made anew each step: class-balanced draws, distorted, through the module.

    Calling it returns (bottlenecks float32 [batch, dim], labels int64 [batch]). Draws
    follow retrain.py (a class uniformly among those with training images, then an
    image of it uniformly, with replacement); batch_size < 0 takes every image.
    """

    def __init__(self, *, images, labels, distorter: Distorter, extract, batch_size: int, seed: int, workers: int):
        self.images = images
        self.labels = np.asarray(labels, np.int64)
        self.distorter = distorter
        self.extract = extract
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.by_class = [np.flatnonzero(self.labels == c) for c in np.unique(self.labels)]
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)

    def draw(self) -> np.ndarray:
        """Indices into images of one batch."""
        if self.batch_size < 0:
            return np.arange(len(self.labels))
        classes = self.rng.integers(len(self.by_class), size=self.batch_size)
        return np.array([self.by_class[c][self.rng.integers(len(self.by_class[c]))] for c in classes])

    def __call__(self):
        rows = self.draw()
        seeds = self.rng.integers(0, 2**62, size=(len(rows), 2))

        def one(i):
            image = self.images[rows[i]]
            pixels = read_image(image) if isinstance(image, str) else image
            return self.distorter(pixels, seeds[i])

        batch = np.stack(list(self.pool.map(one, range(len(rows)))))
        return np.asarray(self.extract(batch), np.float32), self.labels[rows]
