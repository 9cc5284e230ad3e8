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
import time
import warnings
from typing import Callable

import numpy as np
from absl import logging

from retrain import batching, cache_records, float_text, storage
from retrain.batching import BatchDecoder
from retrain.cache_records import CacheRecords
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
    return float_text.format_float32(values)


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


def read_cached(path: str, dim: int) -> np.ndarray | None:
    """The cached bottleneck at path, or None when it must be (re)computed.

    None for a missing file, and one that does not parse or has the wrong length
    (warned about, as retrain.py did). Whether it is current for its image is
    cache_records' question.
    """
    return _read_and_parse(path, dim)


def read_cached_files(paths: list[str], dim: int) -> list[np.ndarray | None]:
    """read_cached for every path, the files read and parsed on all cores at once.

    Python's own parsing holds the interpreter lock, so threads cannot share it; a
    tf.data pipeline reads and parses in C++ instead (4,000 files of 2,048 values:
    0.4-0.8 s on 2 slow cores, against 2 s for numpy in one thread). A file it cannot
    parse is read once more here, to be warned about and rebuilt as before.
    """
    values: list[np.ndarray | None] = [None] * len(paths)
    for position, vector in _parse_files(paths, dim):
        values[position] = vector
    for i, path in enumerate(paths):
        if values[i] is None:
            values[i] = _read_and_parse(path, dim)
    return values


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

    @tf.autograph.experimental.do_not_convert  # Plain ops: AutoGraph would only cost time.
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
    tag: str = "",
) -> list[CacheEntry]:
    """The entries for the listed images of the given categories, in retrain.py's order.

    With copies > 0, each image gets that many entries instead, one per distorted
    copy, cached as ``<image>_<module>_<copy_tag>-copy<k>.txt`` beside the plain ones.
    A tag (entries made with other pixels, e.g. fast JPEG decoding) names them
    ``<image>_<module>_<tag>.txt``, so they never mix with retrain.py's.
    """
    entries = []
    for label_index, (label, lists) in enumerate(image_lists.items()):
        for category in categories:
            for file_name in lists[category]:
                image_path = image_lists.image_path(label, file_name)
                relative_path = image_lists.relative_path(label, file_name)
                plain = bottleneck_path(bottleneck_dir, lists["dir"], file_name, module_handle)
                if tag:
                    plain = f"{plain[:-len('.txt')]}_{tag}.txt"
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
    module_fingerprint: str = "",
    tag: str = "",
) -> Bottlenecks:
    """Reads every listed image's bottleneck from the cache, computing what is missing.

    Args:
      image_lists: as returned by create_image_lists.
      bottleneck_dir: the cache root; created as needed (read-only is fine: what
        cannot be saved is computed in memory).
      module_handle: the --tfhub_module string (part of the cache file names).
      dim: the module's feature count; cache files of another length are rebuilt.
      decode: image paths -> batches of float32 [batch, height, width, 3] module
        inputs, each a call of extract, with an error for each unusable file
        (module_inputs.module_input_decoder, or batching.threaded_decoder).
      extract: float32 [batch, height, width, 3] -> float32 [batch, dim].
      categories: the sets to load; the others come back empty.
      module_fingerprint: what was loaded (hub_module.FeatureExtractor.fingerprint);
        entries recorded with another one are recomputed. '' checks nothing.
      tag: see cache_entries.

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
        tag=tag,
    )
    return load_or_compute_entries(
        entries,
        dim=dim,
        decode=lambda todo: decode([entry.image_path for entry in todo]),
        extract=extract,
        bottleneck_dir=bottleneck_dir,
        module_handle=module_handle,
        module_fingerprint=module_fingerprint,
    )


class _CacheWriter:
    """Writes cache files and their records on one low-priority thread, behind the module.

    A cache that cannot be written (read-only, full, gone) costs one warning: from
    then on bottlenecks stay in memory only, and the run goes on.
    """

    _SAVE_EVERY_SECONDS = 20.0

    def __init__(self, records: CacheRecords, bottleneck_dir: str, writable: bool):
        self.records = records
        self.bottleneck_dir = bottleneck_dir
        self.writable = writable
        self.written = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(1, initializer=_lower_thread_priority)
        self._last_save = time.monotonic()

    def submit(self, items: list[tuple["CacheEntry", np.ndarray, storage.FileStat | None]]) -> None:
        if self.writable:
            self._pool.submit(self._write, items)

    def _write(self, items) -> None:
        if not self.writable:
            return
        try:
            for entry, vector, image_stat in items:
                logging.debug("Creating bottleneck at %s", entry.cache_path)
                write_bottleneck(entry.cache_path, vector)
                self.written += 1
                self._record(entry, image_stat)
            if time.monotonic() - self._last_save > self._SAVE_EVERY_SECONDS:
                self.records.save()
                self._last_save = time.monotonic()
        except OSError as e:
            self.writable = False
            logging.warning(
                "Cannot write to the bottleneck cache %s (%s): the remaining bottlenecks are kept in memory "
                "only and computed again next time.", self.bottleneck_dir, e.strerror or e,
            )

    def _record(self, entry: "CacheEntry", image_stat) -> None:
        try:
            image_stat = image_stat or storage.stat(entry.image_path)
            digest = cache_records.content_digest(storage.read_bytes(entry.image_path))
        except OSError:
            return  # The image vanished: no record, so the entry is checked as retrain.py would.
        self.records.put(entry.cache_path, cache_records.Record(image_stat.size, image_stat.mtime_ns, digest))

    def close(self) -> None:
        """Finishes every queued write, then saves the records."""
        self._pool.shutdown(wait=True)
        if self.writable:
            try:
                self.records.save()
            except OSError as e:
                logging.warning("Cannot save the cache records in %s (%s).", self.bottleneck_dir, e.strerror or e)


def _writable(bottleneck_dir: str) -> tuple[bool, str]:
    try:
        storage.check_writable(bottleneck_dir)
    except OSError as e:
        return False, str(e.strerror or e)
    return True, ""


@dataclasses.dataclass
class CacheState:
    """What the cache holds for a list of entries (see read_cache).

    Attributes:
      records: the cache's records for the module (refreshed and adopted ones pending).
      check: which entries are current, and their images' stats.
      values: per entry, its float32 [dim] bottleneck, or None when it must be computed.
      missing: positions of the entries to compute.
    """

    records: CacheRecords
    check: cache_records.Check
    values: list[np.ndarray | None]
    missing: list[int]


def read_cache(
    entries: list[CacheEntry], *, dim: int, bottleneck_dir: str, module_handle: str = "", module_fingerprint: str = ""
) -> CacheState:
    """Reads every current entry; the others (missing, stale, unreadable) are listed in missing.

    Logs, as a run does, a module whose files changed and images whose content changed.
    """
    records = CacheRecords(bottleneck_dir, mangle_module_name(module_handle), module_fingerprint).load()
    if records.module_changed:
        logging.warning(
            "Module %s is not the one its cached bottlenecks in %s were computed with (its files changed): "
            "recomputing them.", module_handle, bottleneck_dir,
        )
    check = cache_records.check_entries(entries, records, workers=max(8, 2 * (os.cpu_count() or 1)))
    for image_path in check.changed:
        logging.info("Image %s changed since its bottleneck was cached, recreating bottleneck", image_path)
    candidates = [i for i, current in enumerate(check.current) if current]
    values: list[np.ndarray | None] = [None] * len(entries)
    for i, vector in zip(candidates, read_cached_files([entries[i].cache_path for i in candidates], dim)):
        values[i] = vector
    missing = [i for i, v in enumerate(values) if v is None]
    return CacheState(records, check, values, missing)


def load_or_compute_entries(
    entries: list[CacheEntry],
    *,
    dim: int,
    decode: BatchDecoder,
    extract: Callable[[np.ndarray], np.ndarray],
    bottleneck_dir: str,
    module_handle: str = "",
    module_fingerprint: str = "",
) -> Bottlenecks:
    """load_or_compute for explicit entries; decode takes CacheEntries, not paths."""
    state = read_cache(
        entries, dim=dim, bottleneck_dir=bottleneck_dir, module_handle=module_handle,
        module_fingerprint=module_fingerprint,
    )
    records, check, values, missing = state.records, state.check, state.values, state.missing
    writable, reason = _writable(bottleneck_dir) if missing or records.pending else (True, "")
    if not writable:
        logging.warning(
            "Cannot write to the bottleneck cache %s (%s): %d bottlenecks are computed in memory and not saved.",
            bottleneck_dir, reason, len(missing),
        )
    failed: dict[str, str] = {}
    if missing:
        logging.info("Computing %d bottlenecks (%d found in the cache).", len(missing), len(entries) - len(missing))
        if writable and not float_text.compiled():
            logging.info("Cache files are written by numpy: %s.", float_text.INSTALL_HINT)
    processed = len(entries) - len(missing)
    writer = _CacheWriter(records, bottleneck_dir, writable)
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
                        items.append((todo[position], vector, check.image_stats[missing[position]]))
                    writer.submit(items)
                done = len(positions) + len(errors)
                progress.update(done)
                before, processed = processed, processed + done
                if processed // 100 > before // 100 and not progress.drawing:
                    # retrain.py's progress line, for logs; a terminal has the bar.
                    logging.info("%d bottleneck files created.", processed // 100 * 100)
        logging.info("%d bottleneck files created.", processed)
    except KeyboardInterrupt as e:
        writer.close()  # Finish the writes already queued, and record them: they are counted.
        cached_count = len(entries) - len(missing) + writer.written
        raise Interrupted(
            f"Interrupted: {cached_count} of {len(entries)} bottlenecks are cached in {bottleneck_dir}; "
            "run the same command again to resume."
        ) from e
    finally:
        writer.close()
    computed = sum(1 for i in missing if values[i] is not None)
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
        computed=computed,
        reused=len(entries) - len(missing),
    )
