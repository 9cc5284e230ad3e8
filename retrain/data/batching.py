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


def untuned(dataset, private_threads: int = 0):
    """A tf.data dataset with autotuning off, for pipelines whose parallelism is set.

    Nothing is left to tune, and the tuning thread would make the deletion of every
    iterator wait for its next wake-up: up to seconds at the end of each pass.

    With private_threads, the pipeline runs on threads of its own, each op on one
    thread: it then never takes threads from the pool the module's ops share out
    their work on (see background_threads).
    """
    import tensorflow as tf  # Only here: the thread decoders need no TensorFlow.

    options = tf.data.Options()
    options.autotune.enabled = False
    if private_threads:
        options.threading.private_threadpool_size = private_threads
        options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def thread_ids() -> set[int]:
    """The ids of this process's threads now (Linux); empty elsewhere."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def lower_priority(thread_ids_: set[int]) -> None:
    """Gives these threads, but TensorFlow's own pools, the lowest CPU priority (Linux only).

    For decoding beside a module that keeps every core busy: the module's ops split
    their work over all cores and wait for the slowest part, so a decoder at equal
    priority stalls them all; at the lowest it takes the idle moments first.
    TensorFlow names the threads that run the module's ops ("tf_Compute", ...); the
    tf.data pipeline's threads and Python's have the process's name.
    """
    for thread_id in thread_ids_:
        try:
            with open(f"/proc/self/task/{thread_id}/comm") as f:
                if f.read().startswith("tf_"):
                    continue
            os.setpriority(os.PRIO_PROCESS, thread_id, 19)
        except (OSError, AttributeError):
            pass  # Gone already, or not Linux.
