"""The bottleneck cache: one text file of feature values per image and module.

Layout and format are retrain.py's, so caches are shared with it in both directions:
``<bottleneck_dir>/<class folder>/<image file name>_<mangled module>.txt`` holding the
float32 values as shortest round-trip decimals joined by commas.

Missing or unusable entries are computed in batches: a BatchDecoder (tf.data in a run,
see module_inputs; threads for distorted copies) decodes images ahead while the module
runs on the previous batch. The module is any callable from float32 [batch, height,
width, 3] to float32 [batch, dim], so this file needs no TF-Hub; TensorFlow serves
only to read a warm cache on every core.
"""

import concurrent.futures
import contextlib
import dataclasses
import os
import sys
import threading
import warnings
from typing import Callable

import numpy as np
from absl import logging

from retrain import batching, storage
from retrain.batching import BatchDecoder
from retrain.errors import Interrupted
from retrain.image_lists import CATEGORIES, ImageLists
from retrain.progress import Progress


def mangle_module_name(module_handle: str) -> str:
    """The module part of a cache file name: separators of URLs and paths become '~'."""
    name = module_handle
    for separator in ("://", "/", ":", "\\"):
        name = name.replace(separator, "~")
    return name


def bottleneck_path(bottleneck_dir: str, dir_name: str, file_name: str, module_handle: str) -> str:
    """Where the bottleneck of image ``<dir_name>/<file_name>`` for a module is cached."""
    return storage.join(bottleneck_dir, dir_name, f"{file_name}_{mangle_module_name(module_handle)}.txt")


def format_bottleneck(values: np.ndarray) -> str:
    """float32 [dim] as retrain.py wrote it: shortest round-trip decimals, comma separated."""
    return ",".join(str(v) for v in np.asarray(values, dtype=np.float32).ravel())


def parse_bottleneck(text: str, dim: int | None = None) -> np.ndarray:
    """Parses format_bottleneck's text into float32 [dim].

    Raises:
      ValueError: a value is not a number, or the count differs from dim.
    """
    with warnings.catch_warnings():
        # Older numpy warns and returns what it parsed where newer numpy raises.
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=np.float32, sep=",")
        except (ValueError, DeprecationWarning) as e:
            raise ValueError(f"not a list of numbers: {e}") from e
    if values.shape[0] == 0:
        raise ValueError("empty")
    if dim is not None and values.shape[0] != dim:
        raise ValueError(f"expected {dim} values, found {values.shape[0]}")
    return values


def write_bottleneck(path: str, values: np.ndarray) -> None:
    """Writes one cache file atomically."""
    storage.write_text(path, format_bottleneck(values))


def read_cached(path: str, image_path: str, dim: int) -> np.ndarray | None:
    """The cached bottleneck at path, or None when it must be (re)computed.

    None for a missing file, one older than its image (the image was replaced), and
    one that does not parse or has the wrong length (warned about, as retrain.py did).
    """
    return _read_and_parse(path, dim) if _worth_reading(path, image_path) else None


def read_cached_entries(entries: list["CacheEntry"], dim: int) -> list[np.ndarray | None]:
    """read_cached for every entry, the files read and parsed on all cores at once.

    Python's own parsing holds the interpreter lock, so threads cannot share it; a
    tf.data pipeline reads and parses in C++ instead (4,000 files of 2,048 values:
    0.4-0.8 s on 2 slow cores, against 2 s for numpy in one thread). A file it cannot
    parse is read once more here, to be warned about and rebuilt as before.
    """
    candidates = [i for i, e in enumerate(entries) if _worth_reading(e.cache_path, e.image_path)]
    values: list[np.ndarray | None] = [None] * len(entries)
    for position, vector in _parse_files([entries[i].cache_path for i in candidates], dim):
        values[candidates[position]] = vector
    for i in candidates:
        if values[i] is None:
            values[i] = _read_and_parse(entries[i].cache_path, dim)
    return values


def _worth_reading(path: str, image_path: str) -> bool:
    """False for a missing cache file, or one older than its image (logged)."""
    try:
        cache_time = storage.stat(path).mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # Reading it reports the problem.
    try:
        if storage.stat(image_path).mtime_ns > cache_time:
            logging.info("Image %s changed since its bottleneck was cached, recreating bottleneck", image_path)
            return False
    except OSError:
        pass  # The image's own read will report it.
    return True


def _read_and_parse(path: str, dim: int) -> np.ndarray | None:
    try:
        # Bytes that are not text parse as no number: rebuilt like any corrupt file.
        text = storage.read_text(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        logging.warning("Cannot read bottleneck %s (%s), recreating bottleneck", path, e)
        return None
    try:
        return parse_bottleneck(text, dim)
    except ValueError:
        logging.warning("Invalid float found, recreating bottleneck")
        return None


def _parse_files(paths: list[str], dim: int, batch_size: int = 512):
    """Yields (position, float32 [dim]) for each file of paths that holds dim numbers.

    The others (unreadable, not numbers, another length) are left out silently.
    """
    if not paths:
        return
    import tensorflow as tf  # Only here: the rest of the cache needs no TensorFlow.

    def parse(index, path):
        values = tf.strings.to_number(tf.strings.split(tf.io.read_file(path), ","), tf.float32)
        return index, tf.ensure_shape(values, [dim])

    dataset = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64), tf.constant(paths)))
    dataset = dataset.map(parse, num_parallel_calls=os.cpu_count() or 1, deterministic=False)
    dataset = batching.untuned(dataset.ignore_errors().batch(batch_size).prefetch(1))
    for indices, vectors in dataset:
        yield from zip(indices.numpy().tolist(), vectors.numpy())


def _lower_thread_priority() -> None:
    """Gives the calling thread the lowest CPU priority, where the OS allows one thread's.

    The cache writer formats text in Python; at normal priority it cuts into the
    module's cores in small slices, which costs the module more than the writing
    itself (about 1% of the extraction rate on 2 cores). Writes can wait; they are
    all finished before the cache is reported complete.
    """
    if sys.platform.startswith("linux"):  # Linux alone gives each thread its own nice value.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


@dataclasses.dataclass
class BottleneckSet:
    """The bottlenecks of one category, in memory.

    Attributes:
      features: float32 [n, dim].
      labels: int64 [n], indices into the class order.
      image_paths: the n image files, for reporting.
    """

    features: np.ndarray
    labels: np.ndarray
    image_paths: list[str]

    def __len__(self) -> int:
        return len(self.image_paths)


@dataclasses.dataclass
class Bottlenecks:
    """Every category's bottlenecks, and the images that could not be used."""

    sets: dict[str, BottleneckSet]
    failed_images: list[tuple[str, str]]
    computed: int
    reused: int


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One bottleneck to have: which image, which set, and where it is cached.

    copy_index is None for the plain bottleneck of an image, or the number of one of
    its distorted copies.
    """

    label_index: int
    category: str
    image_path: str
    relative_path: str
    cache_path: str
    copy_index: int | None = None


def cache_entries(
    *,
    image_lists: ImageLists,
    bottleneck_dir: str,
    module_handle: str,
    categories=CATEGORIES,
    copies: int = 0,
    copy_tag: str = "",
) -> list[CacheEntry]:
    """The entries for the listed images of the given categories, in retrain.py's order.

    With copies > 0, each image gets that many entries instead, one per distorted
    copy, cached as ``<image>_<module>_<copy_tag>-copy<k>.txt`` beside the plain ones.
    """
    entries = []
    for label_index, (label, lists) in enumerate(image_lists.items()):
        for category in categories:
            for file_name in lists[category]:
                image_path = image_lists.image_path(label, file_name)
                relative_path = image_lists.relative_path(label, file_name)
                plain = bottleneck_path(bottleneck_dir, lists["dir"], file_name, module_handle)
                if not copies:
                    entries.append(CacheEntry(label_index, category, image_path, relative_path, plain))
                for k in range(copies):
                    cache_path = f"{plain[:-len('.txt')]}_{copy_tag}-copy{k}.txt"
                    entries.append(CacheEntry(label_index, category, image_path, relative_path, cache_path, k))
    return entries


def load_or_compute(
    *,
    image_lists: ImageLists,
    bottleneck_dir: str,
    module_handle: str,
    dim: int,
    decode: BatchDecoder,
    extract: Callable[[np.ndarray], np.ndarray],
    categories=CATEGORIES,
) -> Bottlenecks:
    """Reads every listed image's bottleneck from the cache, computing what is missing.

    Args:
      image_lists: as returned by create_image_lists.
      bottleneck_dir: the cache root; created as needed.
      module_handle: the --tfhub_module string (part of the cache file names).
      dim: the module's feature count; cache files of another length are rebuilt.
      decode: image paths -> batches of float32 [batch, height, width, 3] module
        inputs, each a call of extract, with an error for each unusable file
        (module_inputs.module_input_decoder, or batching.threaded_decoder).
      extract: float32 [batch, height, width, 3] -> float32 [batch, dim].
      categories: the sets to load; the others come back empty.

    Returns:
      Bottlenecks whose sets hold, per category, the usable images in class order.
      Images that failed to decode are left out of every set and listed with the
      reason in failed_images; each is warned about as it is found.
    """
    entries = cache_entries(
        image_lists=image_lists,
        bottleneck_dir=bottleneck_dir,
        module_handle=module_handle,
        categories=categories,
    )
    return load_or_compute_entries(
        entries,
        dim=dim,
        decode=lambda todo: decode([entry.image_path for entry in todo]),
        extract=extract,
        bottleneck_dir=bottleneck_dir,
    )


def load_or_compute_entries(
    entries: list[CacheEntry],
    *,
    dim: int,
    decode: BatchDecoder,
    extract: Callable[[np.ndarray], np.ndarray],
    bottleneck_dir: str,
) -> Bottlenecks:
    """load_or_compute for explicit entries; decode takes CacheEntries, not paths."""
    cached = read_cached_entries(entries, dim)
    values: list[np.ndarray | None] = list(cached)
    missing = [i for i, v in enumerate(cached) if v is None]
    failed: dict[str, str] = {}
    if missing:
        logging.info("Computing %d bottlenecks (%d found in the cache).", len(missing), len(entries) - len(missing))
    processed = len(entries) - len(missing)
    written = 0

    def write_batch(items):
        for path, vector in items:
            logging.debug("Creating bottleneck at %s", path)
            write_bottleneck(path, vector)

    # Files are written on another thread while the module runs on the next batch.
    writer = concurrent.futures.ThreadPoolExecutor(1, initializer=_lower_thread_priority)
    pending_writes = []
    try:
        with Progress(len(missing), "Computing bottlenecks") as progress:
            todo = [entries[i] for i in missing]
            for positions, batch, errors in decode(todo):
                for position, error in errors:
                    if todo[position].image_path not in failed:
                        logging.warning("Skipping %s", error)
                        failed[todo[position].image_path] = error
                if batch is not None:
                    features = np.asarray(extract(batch), dtype=np.float32)
                    items = []
                    for position, vector in zip(positions, features):
                        values[missing[position]] = vector
                        items.append((todo[position].cache_path, vector))
                    pending_writes.append(writer.submit(write_batch, items))
                    written += len(items)
                done = len(positions) + len(errors)
                progress.update(done)
                before, processed = processed, processed + done
                if processed // 100 > before // 100 and not progress.drawing:
                    # retrain.py's progress line, for logs; a terminal has the bar.
                    logging.info("%d bottleneck files created.", processed // 100 * 100)
        for future in pending_writes:
            future.result()  # Raises a write error here, in this thread.
        logging.info("%d bottleneck files created.", processed)
    except KeyboardInterrupt as e:
        writer.shutdown(wait=True)  # Finish the writes already queued: they are counted.
        cached_count = len(entries) - len(missing) + written
        raise Interrupted(
            f"Interrupted: {cached_count} of {len(entries)} bottlenecks are cached in {bottleneck_dir}; "
            "run the same command again to resume."
        ) from e
    finally:
        writer.shutdown(wait=True)
    sets = {}
    for category in CATEGORIES:
        chosen = [i for i, e in enumerate(entries) if e.category == category and values[i] is not None]
        sets[category] = BottleneckSet(
            features=np.stack([values[i] for i in chosen]) if chosen else np.zeros((0, dim), np.float32),
            labels=np.array([entries[i].label_index for i in chosen], dtype=np.int64),
            image_paths=[entries[i].image_path for i in chosen],
        )
    return Bottlenecks(
        sets=sets,
        failed_images=list(failed.items()),
        computed=written,
        reused=len(entries) - len(missing),
    )
