"""Bottlenecks in memory: one set per category, as training and evaluation use them."""

import dataclasses

import numpy as np

from retrain.data.image_lists import CATEGORIES


@dataclasses.dataclass
class BottleneckSet:
    """The bottlenecks of one category, in memory.

    Attributes:
      features: float32 [n, dim].
      labels: int64 [n], indices into the class order.
      image_paths: the n image files, for reporting and for computing anew.
      source: which module computed the features (FeatureExtractor.identity); a model
        whose module is another one (tuned, say) must not use them.
    """

    features: np.ndarray
    labels: np.ndarray
    image_paths: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def bottlenecks(self, rows) -> np.ndarray:
        """float32 [k, dim]: the features of int [k] rows (what training draws, when cached)."""
        return self.features[np.asarray(rows, np.int64)]

    def subset(self, rows) -> "BottleneckSet":
        """The rows given (int [k]), in that order."""
        rows = np.asarray(rows, np.int64)
        return BottleneckSet(self.features[rows], self.labels[rows], [self.image_paths[i] for i in rows], self.source)


def empty_set(dim: int, source: str = "") -> BottleneckSet:
    return BottleneckSet(np.zeros((0, dim), np.float32), np.zeros(0, np.int64), [], source)


@dataclasses.dataclass
class Bottlenecks:
    """Every category's bottlenecks, and the images that could not be used.

    Attributes:
      sets: category -> BottleneckSet (empty for categories not asked for).
      failed_images: (image path, reason) per file that is not a readable image.
      computed: bottlenecks the module computed now; reused: read from the cache.
      timed_images, timed_seconds: images decoded and run through the module after the
        first batch (which also loads the module), and the seconds that took: the
        extraction rate, decoding included. 0 when at most one batch was computed.
    """

    sets: dict[str, BottleneckSet]
    failed_images: list[tuple[str, str]]
    computed: int
    reused: int
    timed_images: int = 0
    timed_seconds: float = 0.0


def sets_of(entries, values: list[np.ndarray | None], dim: int, source: str = "") -> dict[str, BottleneckSet]:
    """Per category, the entries (cache.plan.CacheEntry) that have a value, in their order."""
    sets = {}
    for category in CATEGORIES:
        chosen = [i for i, entry in enumerate(entries) if entry.category == category and values[i] is not None]
        if not chosen:
            sets[category] = empty_set(dim, source)
            continue
        sets[category] = BottleneckSet(
            features=np.stack([values[i] for i in chosen]),
            labels=np.array([entries[i].label_index for i in chosen], dtype=np.int64),
            image_paths=[entries[i].image_path for i in chosen],
            source=source,
        )
    return sets
