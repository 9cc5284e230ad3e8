"""Decode images on a pool of threads, ahead of the model, in bounded batches.

Shared by bottleneck caching and label-image: while the model runs on one batch the
threads decode the next ones, and at most two batches wait decoded in memory however
many images there are. A file that fails to decode is reported with its position,
not raised, so one bad image never stops the others.
"""

import concurrent.futures
import os
from typing import Callable, Iterator, Sequence

import numpy as np

from retrain.errors import ImageError

# (positions of the decoded items, their stacked arrays or None, [(position, error)]).
# The arrays may be numpy or TensorFlow; positions need not be sorted.
DecodedBatch = tuple[list[int], object, list[tuple[int, str]]]

# Turns a list of items (paths, cache entries) into DecodedBatches covering each item once.
BatchDecoder = Callable[[Sequence], Iterator[DecodedBatch]]


def load_or_error(load_image: Callable[[object], np.ndarray], item) -> tuple[np.ndarray | None, str | None]:
    """(load_image(item), None), or (None, the message) when it raises ImageError."""
    try:
        return load_image(item), None
    except ImageError as e:
        return None, str(e)


def decoded_batches(
    items: Sequence,
    load_image: Callable[[object], np.ndarray],
    batch_size: int,
    workers: int,
    stack: Callable[[list], object] = np.stack,
) -> Iterator[DecodedBatch]:
    """Yields (positions, stacked images or None, [(position, error)]) per batch of items.

    load_image turns one item (a path, or anything that names an image) into an
    array, or raises ImageError; stack makes a batch of those (np.stack, or list to
    keep items such as file contents apart).

    Decoding runs ahead on a thread pool by at most two batches, so memory stays
    bounded however many images there are.
    """
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: list[concurrent.futures.Future] = []
        next_index = 0
        try:
            for start in range(0, len(items), batch_size):
                stop = min(start + batch_size, len(items))
                while next_index < min(len(items), stop + 2 * batch_size):
                    pending.append(pool.submit(load_or_error, load_image, items[next_index]))
                    next_index += 1
                positions, images, errors = [], [], []
                for position in range(start, stop):
                    image, error = pending.pop(0).result()
                    if error is None:
                        positions.append(position)
                        images.append(image)
                    else:
                        errors.append((position, error))
                yield positions, (stack(images) if images else None), errors
        finally:
            for future in pending:
                future.cancel()


def threaded_decoder(load_image: Callable[[object], np.ndarray], batch_size: int, workers: int | None = None) -> BatchDecoder:
    """A BatchDecoder that runs load_image on a pool of threads (decoded_batches)."""
    workers = workers or os.cpu_count() or 1
    return lambda items: decoded_batches(items, load_image, batch_size, workers)


def untuned(dataset):
    """A tf.data dataset with autotuning off, for pipelines whose parallelism is set.

    Nothing is left to tune, and the tuning thread would make the deletion of every
    iterator wait for its next wake-up: up to seconds at the end of each pass.
    """
    import tensorflow as tf  # Only here: the thread decoders need no TensorFlow.

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
