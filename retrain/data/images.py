"""Read one image file into pixels, and resize pixels the way the originals did.

Decoding is by content, not by file name: TensorFlow's decoder first (JPEG, PNG, GIF,
BMP; the same pixels retrain.py and label_image.py saw, so old caches and graphs stay
valid), then Pillow for what it cannot read (WebP, CMYK JPEG, ...). An EXIF orientation
tag, as phone cameras write, is applied; images without one are left as they are.
"""

import functools
import io

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from retrain.data import storage
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
    return _parse_header(contents)[0]


def read_header(path: str) -> tuple[int, int]:
    """(EXIF orientation 1-8, pixel count) of an image file from its first bytes; (1, 0) if unknown."""
    try:
        with storage.open_read(path) as f:
            head = f.read(_HEADER_BYTES)
    except Exception:  # OSError, or a remote filesystem's own: decoding will report it.
        return 1, 0
    return _parse_header(head)


def read_orientation(path: str) -> int:
    """exif_orientation of the image file at path, reading only its header; 1 if unreadable."""
    return read_header(path)[0]


def _parse_header(head: bytes) -> tuple[int, int]:
    """(EXIF orientation 1-8, pixel count) from an image file's first bytes; (1, 0) if unknown."""
    try:
        with Image.open(io.BytesIO(head)) as image:
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            width, height = image.size
    except Exception:  # No header Pillow understands: nothing to apply; decoding will say.
        return 1, 0
    return (orientation if orientation in range(1, 9) else 1), width * height


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
    return _scale_and_resize(height, width)(pixels).numpy()


@functools.lru_cache(maxsize=8)
def _scale_and_resize(height: int, width: int):
    """One compiled function per output size: it runs once per image."""
    return tf.function(
        lambda pixels: scale_orient_resize(pixels, tf.constant(1), height, width),
        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
        autograph=False,
    )


def _sampling(in_size: tf.Tensor, out_size: int):
    """TF1 resize_bilinear's sampling along one axis: (lower, upper) int32 [out_size], lerp float32 [out_size].

    As the kernel computes them: scale = float(in) / out, position = float(i) * scale,
    lower = floor, upper = min(ceil, in - 1), lerp = position - floor. All float32.
    """
    # A true division, as the kernel's: grappler turns x / constant into x * (1 / constant),
    # which rounds differently; DivNoNan (here never by 0) it leaves alone.
    scale = tf.math.divide_no_nan(tf.cast(in_size, tf.float32), tf.constant(out_size, tf.float32))
    position = tf.range(out_size, dtype=tf.float32) * scale
    floor = tf.floor(position)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), tf.cast(in_size, tf.int32) - 1)
    return lower, upper, position - floor


# Images with more pixels than this many times the output's are resized by gathering
# the pixels the resize reads (a fixed cost of a few ms); smaller ones by converting
# them whole (a cost that grows with the image). Both give the same bits.
_GATHER_ABOVE = 16


def is_large(pixel_count: int, height: int, width: int) -> bool:
    """Whether an image of pixel_count pixels is resized faster by gathering (see scale_orient_resize)."""
    return pixel_count > _GATHER_ABOVE * height * width


def scale_orient_resize(
    pixels: tf.Tensor, orientation: tf.Tensor, height: int, width: int, large: bool | None = None
) -> tf.Tensor:
    """resize_bilinear_v1(orient(convert_image_dtype(pixels))): retrain.py's pixels, made cheaply.

    For large images only the two rows and two columns around each output pixel are
    gathered, turned and scaled: for a 12-megapixel photo a few hundred rows instead
    of converting and turning all 36 million values first. The same float32 values
    bit for bit either way.

    Args:
      pixels: uint8 [h, w, 3], as stored in the file.
      orientation: int32 scalar EXIF orientation (1-8).
      large: which way to compute it, when the caller knows (is_large); None decides
        per image, at the price of a branch (which in a tf.data pipeline costs about
        what resizing a small image does).

    Returns:
      float32 [height, width, 3] in [0, 1].
    """
    orientation = tf.convert_to_tensor(orientation, tf.int32)

    def whole():
        scaled = tf.image.convert_image_dtype(pixels, tf.float32)
        return resize_bilinear_v1(orient(scaled, orientation)[tf.newaxis], height, width)[0]

    if large is None:
        stored = tf.shape(pixels, out_type=tf.int64)
        result = tf.cond(stored[0] * stored[1] > _GATHER_ABOVE * height * width,
                         lambda: _gather_and_resize(pixels, orientation, height, width), whole)
    else:
        result = _gather_and_resize(pixels, orientation, height, width) if large else whole()
    result.set_shape([height, width, 3])
    return result


def _gather_and_resize(pixels: tf.Tensor, orientation: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """scale_orient_resize by gathering the sampled rows and columns only (see there)."""
    flip_rows, flip_columns, swap_axes = _orientation_steps(orientation)
    stored = tf.shape(pixels, out_type=tf.int32)
    # The upright image's sides; orient() flips the stored axes, then swaps them.
    upright_height = tf.where(swap_axes, stored[1], stored[0])
    upright_width = tf.where(swap_axes, stored[0], stored[1])
    row_low, row_high, row_lerp = _sampling(upright_height, height)
    column_low, column_high, column_lerp = _sampling(upright_width, width)
    rows = tf.concat([row_low, row_high], 0)  # Upright rows to read, [2 * height].
    columns = tf.concat([column_low, column_high], 0)

    def stored_index(indices, size, flipped):
        return tf.where(flipped, size - 1 - indices, indices)

    def gather(first_axis, second_axis):
        return tf.gather(tf.gather(pixels, stored_index(first_axis, stored[0], flip_rows), axis=0),
                         stored_index(second_axis, stored[1], flip_columns), axis=1)

    # Upright (r, c) is stored (r, c) unswapped, (c, r) swapped, each axis maybe flipped.
    gathered = tf.cond(
        swap_axes,
        lambda: tf.transpose(gather(columns, rows), [1, 0, 2]),
        lambda: gather(rows, columns),
    )
    # Scaled as convert_image_dtype scales: float32(x) * float32(1 / 255).
    values = tf.cast(gathered, tf.float32) * tf.constant(1.0 / 255.0, tf.float32)
    top_left = values[:height, :width]
    top_right = values[:height, width:]
    bottom_left = values[height:, :width]
    bottom_right = values[height:, width:]
    x_lerp = column_lerp[tf.newaxis, :, tf.newaxis]
    y_lerp = row_lerp[:, tf.newaxis, tf.newaxis]
    # The kernel's own arithmetic, in its order: two horizontal lerps, then a vertical one.
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    return top + (bottom - top) * y_lerp


def _orientation_steps(orientation: tf.Tensor):
    """bool scalars (flip the stored rows, flip the stored columns, then swap the axes)
    that stand an image of int32 EXIF orientation (1-8) upright."""
    flip_rows = tf.reduce_any(tf.equal(orientation, [3, 4, 6, 7]))
    flip_columns = tf.reduce_any(tf.equal(orientation, [2, 3, 7, 8]))
    swap_axes = tf.reduce_any(tf.equal(orientation, [5, 6, 7, 8]))
    return flip_rows, flip_columns, swap_axes


def orient(pixels: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """apply_orientation as TensorFlow ops, for an int32 scalar orientation (1-8).

    Without branches (a slice whose strides and a transpose whose axes are data): in a
    tf.data pipeline each branch costs more than these ops do on an upright image. With
    strides of 1 and axes in order both hand the input on uncopied (a Reverse op copied
    it: 0.6 ms of a 0.2-megapixel image's 2.5 ms here).
    """
    flip_rows, flip_columns, swap_axes = _orientation_steps(orientation)
    strides = tf.stack([tf.where(flip_rows, -1, 1), tf.where(flip_columns, -1, 1), 1])
    flipped = tf.strided_slice(pixels, [0, 0, 0], [0, 0, 0], strides, begin_mask=0b111, end_mask=0b111)
    return tf.transpose(flipped, tf.where(swap_axes, [1, 0, 2], [0, 1, 2]))


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
