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
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from retrain import batching, images
from retrain.batching import BatchDecoder, DecodedBatch
from retrain.preprocessing import Preprocessing


def module_input_decoder(preprocessing: Preprocessing, batch_size: int, workers: int | None = None) -> BatchDecoder:
    """A BatchDecoder from image paths to float32 [batch, height, width, 3] in [0, 1]."""
    return lambda paths: module_input_batches(paths, preprocessing=preprocessing, batch_size=batch_size, workers=workers)


def module_input_batches(
    paths: Sequence[str], *, preprocessing: Preprocessing, batch_size: int, workers: int | None = None
) -> Iterator[DecodedBatch]:
    """Yields (positions, float32 tf.Tensor [n, height, width, 3], errors) covering paths.

    Batches hold batch_size images, but for the last one; images only the Python
    path reads come in batches of their own, right after the batch they fell in.

    Args:
      paths: image files (any filesystem TensorFlow reads).
      preprocessing: the decoding and the module's input size.
      workers: images decoded at once; default: one per CPU.
    """
    paths = list(paths)
    workers = workers or os.cpu_count() or 1

    def numbered_chunks():
        # EXIF headers are read here, on tf.data's thread, a chunk ahead of decoding;
        # chunks, because each call into Python from tf.data costs more than a header.
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            yield (
                np.arange(start, start + len(chunk), dtype=np.int64),
                np.array(chunk, dtype=object),
                np.array([images.read_orientation(path) for path in chunk], dtype=np.int32),
            )

    dataset = tf.data.Dataset.from_generator(
        numbered_chunks,
        output_signature=(
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([None], tf.string),
            tf.TensorSpec([None], tf.int32),
        ),
    ).unbatch()
    dataset = dataset.map(
        lambda index, path, orientation: (
            index,
            preprocessing.decode(tf.io.read_file(path), orientation),
        ),
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
