"""Stream image files into module inputs with tf.data: the fast path of the bottleneck cache.

Reading, decoding, orienting, scaling and resizing run as TensorFlow ops on tf.data's
C++ threads, a batch ahead of the module, and never take Python's lock: on a CPU the
module keeps both cores while the next batch is decoded in the gaps, which Python
threads (one eager call per image, each holding the lock in turn) could not manage.
The pixels are those of Preprocessing.read (images.read_image + images.to_module_input)
for retrain.py's exact decoding.

A file the pipeline cannot decode (a format only Pillow reads, a broken or vanished
file) is retried on the Python path, which decodes it or explains why not, so what
is skipped and why is the same as before.
"""

import os
import time
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from retrain.data import batching, images
from retrain.data.batching import BatchDecoder, DecodedBatch
from retrain.data.preprocessing import Preprocessing, compiled_decode


def module_input_decoder(
    preprocessing: Preprocessing, batch_size: int, workers: int | None = None, hint: bool = False
) -> BatchDecoder:
    """A BatchDecoder from image paths to float32 [batch, height, width, 3] in [0, 1].

    With hint, logs once when the images are mostly large JPEGs decoded exactly, and
    how much faster --fast_jpeg_decode would decode one of them here.
    """

    def decode(paths):
        paths = list(paths)
        large = mostly_large(paths, preprocessing)
        if hint and large and not preprocessing.fast_jpeg_decode:
            _hint_fast_decoding(paths[len(paths) // 2], preprocessing)
        return module_input_batches(
            paths, preprocessing=preprocessing, batch_size=batch_size, workers=workers, large=large
        )

    return decode


def _hint_fast_decoding(sample: str, preprocessing: Preprocessing) -> None:
    """Logs the hint when the large image at sample is a JPEG that reduced decoding speeds up."""
    try:
        contents = tf.constant(images.read_contents(sample))
        if not contents.numpy().startswith(b"\xff\xd8\xff"):
            return
        exact, fast = (
            decoding_seconds(contents, Preprocessing(preprocessing.height, preprocessing.width, reduced))
            for reduced in (False, True)
        )
    except Exception:  # A hint only: whatever fails here, decoding will report.
        return
    if fast < 0.8 * exact:
        logging.info(
            "Most images are large JPEGs, decoded in full: --fast_jpeg_decode would decode them at reduced "
            "scale in %.0f ms instead of %.0f ms each here (%.1fx; slightly different pixels, cached apart).",
            fast * 1000, exact * 1000, exact / fast,
        )


def decoding_seconds(contents: tf.Tensor, preprocessing: Preprocessing, repeats: int = 3) -> float:
    """Wall seconds to decode contents (a scalar tf.string) into a module input, here.

    The least of repeats calls, after one that traces: a single call of a few ms on a
    shared machine can be stretched by anything else running.
    """
    decode = compiled_decode(preprocessing)
    decode(contents, tf.constant(1))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode(contents, tf.constant(1)).numpy()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def mostly_large(paths: Sequence[str], preprocessing: Preprocessing, sample: int = 32) -> bool:
    """Whether most of paths (judged from up to sample headers spread over them) are large images.

    The whole run then resizes one way (images.scale_orient_resize): the same pixels
    either way, without a per-image branch, which costs as much as a small image's resize.
    """
    if not paths:
        return False
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(sample, len(paths))).astype(int)]
    counts = [images.read_header(path)[1] for path in chosen]
    large = sum(images.is_large(count, preprocessing.height, preprocessing.width) for count in counts)
    return 2 * large > len(chosen)


def numbered_files(paths: Sequence[str], chunk: int) -> tf.data.Dataset:
    """(index int64, path string, EXIF orientation int32) for each of paths, in order.

    EXIF headers are read in Python, chunk files at a time on tf.data's thread, ahead of
    decoding; chunks, because each call into Python from tf.data costs more than a header.
    """
    paths = list(paths)

    def orientations(start):
        part = paths[int(start) : int(start) + chunk]
        return np.array([images.read_orientation(path) for path in part], dtype=np.int32)

    @tf.autograph.experimental.do_not_convert  # Plain TensorFlow ops.
    def numbered_chunk(start, chunk_paths):
        orientation = tf.numpy_function(orientations, [start], tf.int32)
        indices = tf.range(start, start + tf.size(chunk_paths, out_type=tf.int64))
        return indices, chunk_paths, tf.ensure_shape(orientation, [None])

    # Not Dataset.from_generator: the same chunks through it cost 2.5 ms more CPU per image
    # (decoding alone 243 against 452 ordinary JPEGs/s on 2 cores).
    # fsencode: a name that is not UTF-8 (surrogate-escaped by Python) goes as its own bytes.
    path_bytes = tf.constant([os.fsencode(path) for path in paths], tf.string)
    dataset = tf.data.Dataset.zip(
        tf.data.Dataset.range(0, len(paths), chunk),
        tf.data.Dataset.from_tensor_slices(path_bytes).batch(chunk),
    )
    return dataset.map(numbered_chunk).unbatch()


def module_input_batches(
    paths: Sequence[str],
    *,
    preprocessing: Preprocessing,
    batch_size: int,
    workers: int | None = None,
    large: bool | None = None,
) -> Iterator[DecodedBatch]:
    """Yields (positions, float32 tf.Tensor [n, height, width, 3], errors) covering paths.

    Batches hold batch_size images, but for the last one; images only the Python
    path reads come in batches of their own, right after the batch they fell in.

    Args:
      paths: image files (any filesystem TensorFlow reads).
      preprocessing: the decoding and the module's input size.
      workers: images decoded at once; default: one per CPU.
      large: mostly_large(paths, preprocessing), when the caller knows it already.
    """
    paths = list(paths)
    if not paths:
        return  # A warm cache: no pipeline to build (its tracing alone takes a second).
    workers = workers or os.cpu_count() or 1
    if large is None:
        large = mostly_large(paths, preprocessing)

    dataset = numbered_files(paths, batch_size)

    @tf.autograph.experimental.do_not_convert  # Plain TensorFlow ops: converting cost 0.5 s a cold run.
    def read_and_decode(index, path, orientation):
        return index, preprocessing.decode(tf.io.read_file(path), orientation, large)

    dataset = dataset.map(
        read_and_decode,
        num_parallel_calls=workers,
        deterministic=True,
    )
    # A file that fails is dropped here and found again by its missing index.
    dataset = batching.untuned(dataset.ignore_errors().batch(batch_size).prefetch(1), private_threads=workers)

    decode_in_python = batching.threaded_decoder(preprocessing.read, batch_size, workers)

    def python_batches(positions):
        if not positions:
            return
        for found, batch, errors in decode_in_python([paths[i] for i in positions]):
            yield [positions[p] for p in found], batch, [(positions[p], e) for p, e in errors]

    next_index = 0
    before = batching.thread_ids()
    lowered = False
    for indices, batch in dataset:
        if not lowered:
            # The pipeline's threads, started by now, decode at the lowest priority.
            batching.lower_priority(batching.thread_ids() - before)
            lowered = True
        indices = indices.numpy().tolist()
        yield indices, batch, []
        dropped = sorted(set(range(next_index, indices[-1])) - set(indices))
        next_index = indices[-1] + 1
        yield from python_batches(dropped)
    yield from python_batches(list(range(next_index, len(paths))))


def shuffled_batches(
    paths: Sequence[str],
    labels: np.ndarray,
    *,
    preprocessing: Preprocessing,
    batch_size: int,
    seed: tuple[int, int],
    distort=None,
    workers: int | None = None,
) -> tf.data.Dataset:
    """One pass over labelled image files in an order drawn from seed, for training on images.

    Args:
      paths: image files; labels: int64 [n], their classes.
      seed: (run seed, pass number): the order, and each image's distortion seed.
      distort: None for the module inputs as the cache decodes them; else graph code
        (uint8 [h, w, 3] upright pixels, int64 [2] seed) -> float32 [height, width, 3]
        (data.distortions.Distorter.distort_graph), given the image's own seed.

    Returns:
      A dataset of (float32 [b, height, width, 3], int64 [b]) batches, b = batch_size
      but for the last. Files TensorFlow cannot decode (formats only Pillow reads) are
      left out; the caller can count what came through.
    """
    paths = list(paths)
    order = np.random.default_rng(list(seed)).permutation(len(paths))
    shuffled = [paths[i] for i in order]
    shuffled_labels = tf.constant(np.asarray(labels, np.int64)[order])
    workers = workers or os.cpu_count() or 1
    large = mostly_large(shuffled, preprocessing)
    image_seeds = tf.random.experimental.stateless_split(tf.constant(seed, tf.int64), max(1, len(paths)))

    @tf.autograph.experimental.do_not_convert  # Plain TensorFlow ops.
    def load(index, path, orientation):
        contents = tf.io.read_file(path)
        if distort is None:
            image = preprocessing.decode(contents, orientation, large)
        else:
            pixels = tf.io.decode_image(contents, channels=3, expand_animations=False)
            pixels.set_shape([None, None, 3])
            image = distort(images.orient(pixels, orientation), image_seeds[index])
        return image, shuffled_labels[index]

    dataset = numbered_files(shuffled, batch_size).map(load, num_parallel_calls=workers, deterministic=True)
    return batching.untuned(dataset.ignore_errors().batch(batch_size).prefetch(1), private_threads=workers)
