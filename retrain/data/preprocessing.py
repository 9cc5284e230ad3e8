"""The one definition of how an image file becomes a module input.

retrain.py's preprocessing: decode, scale to [0, 1], then TF1's bilinear resize (no
half-pixel centres, aspect ratio not kept) to the module's size. Training (the cache,
distorted copies), the SavedModel's bytes signature, TFLite's representative data and
label-image all call this, so a model answers in serving exactly as in training.

With ``fast_jpeg_decode`` large JPEGs are decoded at 1/2, 1/4 or 1/8 scale in the DCT
domain (the largest that keeps both sides at or above the module's input), then resized
as usual: several times less decoding work for phone photos, slightly different pixels.
Models record it, so what serves them decodes the same way.
"""

import dataclasses
import functools

import numpy as np
import tensorflow as tf

from retrain.data import images

# Scales at which a JPEG can be decoded in the DCT domain, largest reduction first.
_JPEG_RATIOS = (8, 4, 2, 1)
_JPEG_MAGIC = b"\xff\xd8\xff"

# The file-name tag of cache entries made with fast JPEG decoding.
FAST_JPEG_TAG = "fastjpeg"


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How image files are turned into float32 [height, width, 3] RGB in [0, 1]."""

    height: int
    width: int
    fast_jpeg_decode: bool = False

    @property
    def cache_tag(self) -> str:
        """'' for retrain.py's exact pixels, else a tag that keeps their cache entries apart."""
        return FAST_JPEG_TAG if self.fast_jpeg_decode else ""

    def decode(self, contents: tf.Tensor, orientation: tf.Tensor | int = 1, large: bool | None = None) -> tf.Tensor:
        """TensorFlow ops from a file's bytes to the module input (graph-safe).

        Args:
          contents: string scalar, an image file (JPEG, PNG, GIF, BMP).
          orientation: int32 scalar EXIF orientation (1-8) to apply, 1 for none.
          large: the images are mostly large (images.is_large) or not; None decides
            per image (see images.scale_orient_resize). The pixels are the same.

        Returns:
          float32 [height, width, 3] in [0, 1]. Fails, when run, for files
          TensorFlow cannot decode (images.read_image reads those with Pillow).
        """
        orientation = tf.convert_to_tensor(orientation, tf.int32)
        if self.fast_jpeg_decode:
            is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), _JPEG_MAGIC)
            pixels = tf.cond(
                is_jpeg,
                lambda: self._decode_reduced_jpeg(contents, orientation),
                lambda: _decode_any(contents),
            )
            large = None  # Reduced JPEGs are small; other files need not be.
        else:
            pixels = _decode_any(contents)
        # For large images, only the pixels the resize reads are turned, scaled and interpolated.
        return images.scale_orient_resize(pixels, orientation, self.height, self.width, large)

    def decode_file(self, path: str) -> np.ndarray:
        """An image file -> float32 [height, width, 3] module input, as the cache's pipeline makes it.

        EXIF orientation applied; files TensorFlow cannot decode go the Pillow way (read).

        Raises:
          ImageError: the file cannot be read or decoded.
        """
        contents = images.read_contents(path)
        try:
            return compiled_decode(self)(tf.constant(contents), tf.constant(images.exif_orientation(contents))).numpy()
        except tf.errors.OpError:  # As the pipeline drops any failing file for the Python path.
            return self.read(path)

    def decode_batch(self, contents: tf.Tensor) -> tf.Tensor:
        """string [batch] of image files -> float32 [batch, height, width, 3]; no EXIF (graph-only)."""
        return tf.map_fn(
            self.decode,
            contents,
            fn_output_signature=tf.TensorSpec([self.height, self.width, 3], tf.float32),
        )

    def _decode_reduced_jpeg(self, contents, orientation):
        shape = tf.io.extract_jpeg_shape(contents)
        turned = tf.reduce_any(tf.equal(orientation, [5, 6, 7, 8]))
        rows, columns = shape[0], shape[1]
        # The sides of the upright image, which is what gets resized.
        upright_height = tf.where(turned, columns, rows)
        upright_width = tf.where(turned, rows, columns)

        def keeps_size(ratio):
            # decode_jpeg rounds the reduced sides up.
            return tf.logical_and(
                (upright_height + ratio - 1) // ratio >= self.height,
                (upright_width + ratio - 1) // ratio >= self.width,
            )

        # Ratio 1 always "fits": an image smaller than the module's input is decoded whole.
        fits = tf.stack([keeps_size(ratio) for ratio in _JPEG_RATIOS[:-1]] + [tf.constant(True)])
        choice = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)  # The first, i.e. largest, that fits.
        branches = [
            (lambda ratio=ratio: tf.io.decode_jpeg(contents, channels=3, ratio=ratio)) for ratio in _JPEG_RATIOS
        ]
        pixels = tf.switch_case(choice, branches)
        pixels.set_shape([None, None, 3])
        return pixels

    def from_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Decoded, upright uint8 [h, w, 3] -> float32 [height, width, 3] in [0, 1] (Python path)."""
        return images.to_module_input(pixels, self.height, self.width)

    def read(self, path: str) -> np.ndarray:
        """An image file -> its module input, through images.read_image (any format, Pillow too).

        The way for files decode() cannot read; Pillow decodes at full size.

        Raises:
          ImageError: the file cannot be read or decoded.
        """
        return self.from_pixels(images.read_image(path))


@functools.lru_cache(maxsize=8)
def compiled_decode(preprocessing: Preprocessing):
    """Preprocessing.decode as one compiled call per image: (string scalar file contents,
    int32 scalar orientation) -> float32 [height, width, 3]. Made once per setting (the
    frozen dataclass is the key)."""
    return tf.function(
        preprocessing.decode,
        input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32)],
        autograph=False,
    )


def _decode_any(contents):
    pixels = tf.io.decode_image(contents, channels=3, expand_animations=False)
    pixels.set_shape([None, None, 3])
    return pixels
