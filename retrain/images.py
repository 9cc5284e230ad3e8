"""Read one image file into pixels, and resize pixels the way the originals did.

Decoding is by content, not by file name: TensorFlow's decoder first (JPEG, PNG, GIF,
BMP; the same pixels retrain.py and label_image.py saw, so old caches and graphs stay
valid), then Pillow for what it cannot read (WebP, CMYK JPEG, ...). An EXIF orientation
tag, as phone cameras write, is applied; images without one are left as they are.
"""

import io

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from retrain import storage
from retrain.errors import ImageError

# EXIF tag 0x0112: how the stored pixels must be turned to stand upright.
_EXIF_ORIENTATION = 0x0112

# An EXIF block is one JPEG segment of at most 64 KiB, near the start of the file.
_HEADER_BYTES = 1 << 17


def read_image(path: str) -> np.ndarray:
    """Decodes the image file at path.

    Returns:
      uint8 [height, width, 3] RGB: greyscale, palette and alpha are converted, an
      animated GIF gives its first frame, and the EXIF orientation is applied.

    Raises:
      ImageError: the file cannot be read or is not an image.
    """
    contents = read_contents(path)
    pixels = _decode(contents, path)
    return apply_orientation(pixels, exif_orientation(contents))


def read_contents(path: str) -> bytes:
    """The bytes of the image file at path.

    Raises:
      ImageError: it cannot be read, or is empty.
    """
    try:
        contents = storage.read_bytes(path)
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror or e}") from e
    if not contents:
        raise ImageError(f"{path} is empty")
    return contents


def _decode(contents: bytes, path: str) -> np.ndarray:
    try:
        return tf.io.decode_image(contents, channels=3, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        pass  # Not a format TensorFlow reads; Pillow may know it.
    try:
        with Image.open(io.BytesIO(contents)) as image:
            image.seek(0)
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError as e:
        raise ImageError(f"{path} is not a readable image (not a format TensorFlow or Pillow knows)") from e
    except Exception as e:  # Pillow raises many types for broken files.
        raise ImageError(f"{path} is not a readable image ({type(e).__name__}: {e})") from e


def exif_orientation(contents: bytes) -> int:
    """The EXIF orientation (1-8) in an image file's bytes; 1 (upright) when it has none.

    Parses only the header, so contents may be just the file's first bytes.
    """
    try:
        with Image.open(io.BytesIO(contents)) as image:
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # No header Pillow understands: nothing to apply.
        return 1
    return orientation if orientation in range(1, 9) else 1


def read_orientation(path: str) -> int:
    """exif_orientation of the image file at path, reading only its header; 1 if unreadable."""
    try:
        with storage.open_read(path) as f:
            return exif_orientation(f.read(_HEADER_BYTES))
    except Exception:  # OSError, or a remote filesystem's own: decoding will report it.
        return 1


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turns [height, width, channels] pixels upright for an EXIF orientation value."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return np.rot90(pixels, 2).transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def resize_bilinear_v1(images: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """TF1's bilinear resize (no half-pixel centres), as retrain.py and label_image.py used.

    Args:
      images: float32 [batch, h, w, channels].

    Returns:
      float32 [batch, height, width, channels]. TF2's tf.image.resize samples at
      half-pixel centres and would give other pixels than the originals trained on.
    """
    return tf.raw_ops.ResizeBilinear(
        images=images, size=[height, width], align_corners=False, half_pixel_centers=False
    )


def to_module_input(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """retrain.py's preprocessing of decoded pixels for the feature-vector module.

    Args:
      pixels: uint8 [h, w, 3].

    Returns:
      float32 [height, width, 3] in [0, 1]: scaled to [0, 1] first, then resized
      without keeping the aspect ratio.
    """
    return _scale_and_resize(pixels, tf.constant([height, width])).numpy()


@tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([2], tf.int32)])
def _scale_and_resize(pixels, size):
    # One compiled call instead of two eager ops: it runs once per image.
    scaled = tf.image.convert_image_dtype(pixels, tf.float32)
    return resize_bilinear_v1(scaled[tf.newaxis], size[0], size[1])[0]


def orient(pixels: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """apply_orientation as TensorFlow ops, for an int32 scalar orientation (1-8)."""
    flip_rows = tf.reduce_any(tf.equal(orientation, [3, 4, 6, 7]))
    flip_columns = tf.reduce_any(tf.equal(orientation, [2, 3, 7, 8]))
    swap_axes = tf.reduce_any(tf.equal(orientation, [5, 6, 7, 8]))
    pixels = tf.cond(flip_rows, lambda: tf.reverse(pixels, [0]), lambda: pixels)
    pixels = tf.cond(flip_columns, lambda: tf.reverse(pixels, [1]), lambda: pixels)
    return tf.cond(swap_axes, lambda: tf.transpose(pixels, [1, 0, 2]), lambda: pixels)


def to_graph_input(
    pixels: np.ndarray, height: int, width: int, mean: float, std: float
) -> np.ndarray:
    """label_image.py's preprocessing: float pixels 0-255, resized, then (x - mean) / std.

    Args:
      pixels: uint8 [h, w, 3].

    Returns:
      float32 [height, width, 3]; in [0, 1] with the defaults mean 0 and std 255.
    """
    as_float = tf.cast(pixels, tf.float32)[tf.newaxis]
    resized = resize_bilinear_v1(as_float, height, width)
    return ((resized - mean) / std)[0].numpy()
