"""What the bottleneck cache knows about each entry: which image content and which module made it.

retrain.py's cache files stay exactly as they were; beside them, under
``<bottleneck_dir>/.retrain/records/<module>/``, records say for each cache file the
size, modification time and content digest (SHA-256) of the image it was computed
from, and the fingerprint of the module that computed it. An entry is current when:

- its image has the recorded size and mtime (no reading needed), or
- its image has another mtime but the recorded content (a fresh checkout or a
  restored CI cache): reused, and the record refreshed; a changed content, whatever
  its mtime (``cp -p``, ``rsync -t``), means recomputing;
- there is no record (a cache written by retrain.py or an earlier version): trusted
  as retrain.py trusted it (cache file not older than the image) and adopted.

Records written with another module fingerprint (weights replaced at the same path)
count for nothing. Each run writes the records it made or refreshed as a shard file
of its own, atomically, so two runs never overwrite each other's and an interrupted
run keeps what it wrote; shards are merged into one now and then.
"""

import dataclasses
import hashlib
import json
import os
import secrets
import time

from absl import logging

from retrain.cache import layout
from retrain.data import storage

# More shards than this are merged into one when a run saves its own.
_MAX_SHARDS = 16
_FORMAT = 1


def content_digest(data: bytes) -> str:
    """The digest of an image file's bytes recorded with its bottleneck: SHA-256, first 128 bits, hex.

    SHA-256 rather than BLAKE2b: CPUs compute it in hardware (x86 SHA extensions, ARMv8),
    2-3x faster here, which matters when every 4.5 MB phone photo is hashed.
    """
    return hashlib.sha256(data).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class Record:
    """An image as it was when its bottleneck was cached."""

    size: int
    mtime_ns: int
    digest: str


class CacheRecords:
    """The records of one module's cache entries in one bottleneck_dir.

    Keys are cache file paths relative to bottleneck_dir. load() reads every shard
    made with the same module fingerprint; put() notes new or refreshed records;
    save() writes them as this run's shard (again and again as the run goes on).
    """

    def __init__(self, bottleneck_dir: str, mangled_module: str, fingerprint: str):
        self.bottleneck_dir = bottleneck_dir
        self._prefix = storage.join(bottleneck_dir, "")
        self.folder = layout.records_dir(bottleneck_dir, mangled_module)
        self.fingerprint = fingerprint
        self.module_changed = False
        self._records: dict[str, Record] = {}
        self._new: dict[str, Record] = {}
        self._shard = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}.json"
        self._read_shards: list[str] = []
        self._other_shards: list[str] = []

    def key(self, cache_path: str) -> str:
        """cache_path relative to bottleneck_dir, with '/' separators."""
        if cache_path.startswith(self._prefix):
            key = cache_path[len(self._prefix):]
        else:
            key = storage.relative_path(cache_path, self.bottleneck_dir)
        return key.replace(os.sep, "/") if os.sep != "/" else key

    def load(self) -> "CacheRecords":
        """Reads the shards; sets module_changed when all that exist are of another fingerprint."""
        try:
            names = sorted(n for n in storage.listdir(self.folder) if n.endswith(".json"))
        except OSError:
            return self  # No records yet: a new cache, or one written by retrain.py.
        shards = []
        for name in names:
            path = storage.join(self.folder, name)
            try:
                shard = json.loads(storage.read_text(path))
                entries = shard["entries"]
            except (OSError, ValueError, KeyError, TypeError):
                logging.warning("Ignoring unreadable cache records %s", path)
                continue
            if shard.get("fingerprint") == self.fingerprint or not self.fingerprint:
                shards.append((shard.get("written", 0), name, entries))
            else:
                self._other_shards.append(name)
        self.module_changed = bool(self._other_shards) and not shards
        for _, name, entries in sorted(shards):  # Later shards win.
            self._read_shards.append(name)
            for key, (size, mtime_ns, digest) in entries.items():
                self._records[key] = Record(int(size), int(mtime_ns), str(digest))
        return self

    def get(self, cache_path: str) -> Record | None:
        return self._records.get(self.key(cache_path))

    def put(self, cache_path: str, record: Record) -> None:
        key = self.key(cache_path)
        self._records[key] = record
        self._new[key] = record

    @property
    def pending(self) -> int:
        """How many records this run made or refreshed."""
        return len(self._new)

    def save(self) -> None:
        """Writes this run's records as its shard, atomically; merges shards when there are many."""
        if not self._new:
            return
        self._write(self._shard, self._new)
        if len(self._read_shards) + len(self._other_shards) + 1 > _MAX_SHARDS:
            self.compact()

    def _write(self, name: str, entries: dict[str, Record]) -> None:
        document = {
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            "written": time.time(),
            "entries": {key: [r.size, r.mtime_ns, r.digest] for key, r in sorted(entries.items())},
        }
        storage.write_text(storage.join(self.folder, name), json.dumps(document, separators=(",", ":")))

    def compact(self) -> None:
        """Replaces the shards read (those of other fingerprints too) and this run's by one holding every record.

        Shards written meanwhile by others are left alone, so nothing is lost.
        """
        merged = f"merged-{self._shard}"
        self._write(merged, self._records)
        for name in self._read_shards + self._other_shards + [self._shard]:
            try:
                storage.remove(storage.join(self.folder, name))
            except OSError:
                pass  # Another run merged it first.
        self._read_shards, self._other_shards = [merged], []
        self._shard = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}.json"
        self._new = {}


def _digests(paths: list[str], workers: int) -> dict[str, str | None]:
    """{path: content_digest of the file, or None if unreadable}, read and hashed on threads.

    Reading and hashing both release Python's lock, so the threads run on every core.
    """
    import concurrent.futures

    def digest(path):
        try:
            return content_digest(storage.read_bytes(path))
        except OSError:
            return None

    unique = sorted(set(paths))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return dict(zip(unique, pool.map(digest, unique)))


def stat_all(paths: list[str], workers: int) -> list[storage.FileStat | None]:
    """storage.stat of each path (None where it fails); on threads for remote filesystems,
    where each stat is a request."""
    import concurrent.futures

    def stat(path):
        try:
            return storage.stat(path)
        except OSError:
            return None

    if not paths or storage.is_local(paths[0]):
        return [stat(path) for path in paths]
    with concurrent.futures.ThreadPoolExecutor(max(workers, 32)) as pool:
        return list(pool.map(stat, paths))


@dataclasses.dataclass
class Check:
    """The outcome of checking cache entries against their images and records.

    Attributes:
      current: per entry, whether its cache file may be read (it may still fail to parse).
      image_stats: per entry, its image's FileStat (None if it could not be read).
      changed: image paths whose content differs from what their entry was made from.
      hashed: how many image files had to be read to decide.
    """

    current: list[bool]
    image_stats: list[storage.FileStat | None]
    changed: list[str]
    hashed: int


def check_entries(entries, records: CacheRecords, workers: int = 8) -> Check:
    """Decides which entries are current (see the module docstring); refreshes and adopts records.

    entries: objects with image_path and cache_path (cache.plan.CacheEntry).
    """
    count = len(entries)
    image_stats = stat_all([e.image_path for e in entries], workers)
    if records.module_changed:
        return Check([False] * count, image_stats, [], 0)
    current = [False] * count
    recorded, unrecorded = {}, []
    for i, entry in enumerate(entries):
        record = records.get(entry.cache_path)
        if record is None:
            unrecorded.append(i)
        else:
            recorded[i] = record
    changed = set()
    to_hash = []  # (entry index, the record it must match, or None to adopt).
    for i, record in recorded.items():
        image = image_stats[i]
        if image is None:
            current[i] = True  # Reading the image will report it; the cache file is as good as before.
        elif (image.size, image.mtime_ns) == (record.size, record.mtime_ns):
            current[i] = True
        elif image.size != record.size:
            changed.add(entries[i].image_path)
        else:
            to_hash.append((i, record))
    # No record: retrain.py's rule, a cache file not older than its image; then adopted.
    cache_stats = stat_all([entries[i].cache_path for i in unrecorded], workers)
    for i, cache in zip(unrecorded, cache_stats):
        image = image_stats[i]
        if cache is None:
            continue
        if image is None:
            current[i] = True
        elif image.mtime_ns > cache.mtime_ns:
            changed.add(entries[i].image_path)
        else:
            to_hash.append((i, None))
    digests = _digests([entries[i].image_path for i, _ in to_hash], workers) if to_hash else {}
    for i, record in to_hash:
        digest = digests[entries[i].image_path]
        image = image_stats[i]
        if digest is None:
            continue  # Vanished meanwhile: recomputing will report it.
        if record is not None and digest != record.digest:
            changed.add(entries[i].image_path)
            continue
        current[i] = True
        records.put(entries[i].cache_path, Record(image.size, image.mtime_ns, digest))
    return Check(current, image_stats, sorted(changed), len(digests))
