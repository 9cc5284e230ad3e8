"""Reads a run's cache entries and computes the missing ones: the bottleneck cache's engine.

Entries (cache.plan) that are current (cache.records) are read on every core; missing,
stale or unusable ones are computed in batches: a BatchDecoder (tf.data in a run, see
data.module_inputs; threads for distorted copies) decodes images ahead while the module
runs on the previous batch, and one low-priority thread writes the files (cache.layout
names them, cache.text_format writes them) and their records. The module is any
callable from float32 [batch, height, width, 3] to float32 [batch, dim], so this file
needs no TF-Hub; TensorFlow serves only to read a warm cache on every core.
"""

import concurrent.futures
import contextlib
import dataclasses
import os
import sys
import threading
import time
from typing import Callable

import numpy as np
from absl import logging

from retrain.cache import layout, plan, records, text_format
from retrain.cache.plan import CacheEntry
from retrain.cache.records import CacheRecords
from retrain.cache.sets import Bottlenecks, sets_of
from retrain.data import storage
from retrain.data.batching import BatchDecoder
from retrain.data.image_lists import CATEGORIES, ImageLists
from retrain.errors import Interrupted
from retrain.runtime.progress import Progress


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
    source: str = "",
) -> Bottlenecks:
    """Reads every listed image's bottleneck from the cache, computing what is missing
    (fill for the entries of cache.plan.entries, decoding by image path).

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
      module_fingerprint: what was loaded (module.hub.FeatureExtractor.fingerprint);
        entries recorded with another one are recomputed. '' checks nothing.
      tag: see cache.plan.entries.
      source: the identity of the module extract runs, recorded in the sets.

    Returns:
      Bottlenecks whose sets hold, per category, the usable images in class order.
      Images that failed to decode are left out of every set and listed with the
      reason in failed_images; each is warned about as it is found.
    """
    found = plan.entries(
        image_lists, bottleneck_dir=bottleneck_dir, module_name=module_handle, categories=categories, tag=tag
    )
    return fill(
        found,
        dim=dim,
        decode=lambda todo: decode([entry.image_path for entry in todo]),
        extract=extract,
        bottleneck_dir=bottleneck_dir,
        module_handle=module_handle,
        module_fingerprint=module_fingerprint,
        source=source,
    )


class _CacheWriter:
    """Writes cache files and their records on one low-priority thread, behind the module.

    A cache that cannot be written (read-only, full, gone) costs one warning: from
    then on bottlenecks stay in memory only, and the run goes on.
    """

    _SAVE_EVERY_SECONDS = 20.0

    def __init__(self, known: CacheRecords, bottleneck_dir: str, writable: bool):
        self.records = known
        self.bottleneck_dir = bottleneck_dir
        self.writable = writable
        self.written = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(1, initializer=_lower_thread_priority)
        self._last_save = time.monotonic()

    def submit(self, items: list[tuple[CacheEntry, np.ndarray, storage.FileStat | None]]) -> None:
        if self.writable:
            self._pool.submit(self._write, items)

    def _write(self, items) -> None:
        if not self.writable:
            return
        try:
            for entry, vector, image_stat in items:
                logging.debug("Creating bottleneck at %s", entry.cache_path)
                text_format.write_bottleneck(entry.cache_path, vector)
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

    def _record(self, entry: CacheEntry, image_stat) -> None:
        try:
            image_stat = image_stat or storage.stat(entry.image_path)
            digest = records.content_digest(storage.read_bytes(entry.image_path))
        except OSError:
            return  # The image vanished: no record, so the entry is checked as retrain.py would.
        self.records.put(entry.cache_path, records.Record(image_stat.size, image_stat.mtime_ns, digest))

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
    check: records.Check
    values: list[np.ndarray | None]
    missing: list[int]


def read_cache(
    entries: list[CacheEntry], *, dim: int, bottleneck_dir: str, module_handle: str = "", module_fingerprint: str = ""
) -> CacheState:
    """Reads every current entry; the others (missing, stale, unreadable) are listed in missing.

    Writes nothing. Logs, as a run does, a module whose files changed and images whose
    content changed.
    """
    known = CacheRecords(bottleneck_dir, layout.mangle_module_name(module_handle), module_fingerprint).load()
    if known.module_changed:
        logging.warning(
            "Module %s is not the one its cached bottlenecks in %s were computed with (its files changed): "
            "recomputing them.", module_handle, bottleneck_dir,
        )
    check = records.check_entries(entries, known, workers=max(8, 2 * (os.cpu_count() or 1)))
    for image_path in check.changed:
        logging.info("Image %s changed since its bottleneck was cached, recreating bottleneck", image_path)
    candidates = [i for i, current in enumerate(check.current) if current]
    values: list[np.ndarray | None] = [None] * len(entries)
    paths = [entries[i].cache_path for i in candidates]
    for i, vector in zip(candidates, text_format.read_cached_files(paths, dim)):
        values[i] = vector
    missing = [i for i, v in enumerate(values) if v is None]
    return CacheState(known, check, values, missing)


def read_only_sets(
    entries: list[CacheEntry], *, dim: int, bottleneck_dir: str, module_handle: str = "",
    module_fingerprint: str = "", source: str = "",
) -> tuple[Bottlenecks, list[CacheEntry]]:
    """What the cache already holds for entries, computing and writing nothing.

    Returns:
      (Bottlenecks of the current entries, the entries still missing).
    """
    state = read_cache(entries, dim=dim, bottleneck_dir=bottleneck_dir, module_handle=module_handle,
                       module_fingerprint=module_fingerprint)
    held = Bottlenecks(sets_of(entries, state.values, dim, source), [], 0, len(entries) - len(state.missing))
    return held, [entries[i] for i in state.missing]


def fill(
    entries: list[CacheEntry],
    *,
    dim: int,
    decode: BatchDecoder,
    extract: Callable[[np.ndarray], np.ndarray],
    bottleneck_dir: str,
    module_handle: str = "",
    module_fingerprint: str = "",
    source: str = "",
) -> Bottlenecks:
    """Every entry's bottleneck: read when current, else computed and written (see load_or_compute).

    Args:
      decode: CacheEntries -> DecodedBatches of module inputs (paths for plain entries,
        distorted pixels for copies).
      source: the identity of the module extract runs (FeatureExtractor.identity),
        recorded in the sets.
    """
    state = read_cache(
        entries, dim=dim, bottleneck_dir=bottleneck_dir, module_handle=module_handle,
        module_fingerprint=module_fingerprint,
    )
    known, check, values, missing = state.records, state.check, state.values, state.missing
    writable, reason = _writable(bottleneck_dir) if missing or known.pending else (True, "")
    if not writable:
        logging.warning(
            "Cannot write to the bottleneck cache %s (%s): %d bottlenecks are computed in memory and not saved.",
            bottleneck_dir, reason, len(missing),
        )
    failed: dict[str, str] = {}
    if missing:
        logging.info("Computing %d bottlenecks (%d found in the cache).", len(missing), len(entries) - len(missing))
        if writable and not text_format.compiled():
            logging.info("Cache files are written by numpy: %s.", text_format.INSTALL_HINT)
    processed = len(entries) - len(missing)
    writer = _CacheWriter(known, bottleneck_dir, writable)
    timer = _RateTimer()
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
                timer.batch_done(len(positions) if batch is not None else 0)
                progress.update(done)
                before, processed = processed, processed + done
                if processed // 100 > before // 100 and not progress.drawing:
                    # retrain.py's progress line, for logs; a terminal has the bar.
                    logging.info("%d bottleneck files created.", processed // 100 * 100)
        if missing:
            logging.info("%d bottleneck files created.", processed)
        elif entries:
            logging.info("All %d bottlenecks were found in the cache; none computed.", len(entries))
    except KeyboardInterrupt as e:
        writer.close()  # Finish the writes already queued, and record them: they are counted.
        cached_count = len(entries) - len(missing) + writer.written
        raise Interrupted(
            f"Interrupted: {cached_count} of {len(entries)} bottlenecks are cached in {bottleneck_dir}; "
            "run the same command again to resume."
        ) from e
    finally:
        writer.close()
    return Bottlenecks(
        sets=sets_of(entries, values, dim, source),
        failed_images=list(failed.items()),
        computed=sum(1 for i in missing if values[i] is not None),
        reused=len(entries) - len(missing),
        timed_images=timer.images,
        timed_seconds=timer.seconds,
    )


class _RateTimer:
    """Images and seconds of the batches after the first (whose time includes loading the module)."""

    def __init__(self):
        self.images, self.seconds, self._started = 0, 0.0, None

    def batch_done(self, images: int) -> None:
        now = time.perf_counter()
        if self._started is None:
            self._started = now
            return
        self.images += images
        self.seconds = now - self._started
