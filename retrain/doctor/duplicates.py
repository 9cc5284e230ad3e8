"""Duplicates: the same file twice (exact), and re-encoded, resized or brightened copies (near).

Features alone cannot tell a re-saved copy from a similar-looking picture, so pixels
decide. Candidates come cheaply from two sides: each image's nearest neighbours by
bottleneck (cosine, computed in blocks: no n x n matrix) and images sharing a quarter of
their perceptual hash. A candidate is a near copy when its perceptual hashes differ in
few bits and the fine details agree twice: in the 32x32 thumbnails kept for every image,
then, for the few pairs left, at up to 128x128 (never finer than the smaller image) read
again from the files (at 32x32 two objects
of the same shape and framing still look alike; at 128x128 their textures differ).
Pairs join into groups (connected components).
"""

import collections
import dataclasses

import numpy as np

from retrain.doctor import facts as facts_lib

# A pair is a near copy within this many of 64 hash bits and above these detail correlations.
# Measured on copies (re-encoded at quality 60, resized to 70%, brightened 25%): 0-4 bits,
# 0.96-0.99 at 32x32 and 0.91-0.99 at 128x128; on different images of one class of shapes
# on noise (48-640 pixels): 12 bits or more, up to 0.9 at 32x32 but at most 0.37 at 128x128.
MAX_HASH_BITS = 12
MIN_DETAIL_CORRELATION = 0.75
CONFIRM_SIDE = 128
MIN_CONFIRMED_CORRELATION = 0.8
# Candidates by features: each image's nearest neighbours at or above this cosine similarity.
NEIGHBOURS = 10
MIN_FEATURE_COSINE = 0.80
# Hash buckets larger than this (blank or uniform images) are not paired wholesale.
MAX_BUCKET = 64
# Similarities held at once while finding neighbours (float32): 80 MB.
_BLOCK_VALUES = 20_000_000


@dataclasses.dataclass
class DuplicateGroup:
    """Images that are copies of each other.

    Attributes:
      members: indices of the images, in path order.
      kind: 'exact' (the same bytes) or 'near'.
      similarity: the least similar pair's: 1.0 for exact, else 1 - differing hash bits / 64.
    """

    members: list[int]
    kind: str
    similarity: float


def find(features: np.ndarray, facts: facts_lib.ImageFacts, readable: np.ndarray,
         paths: list[str]) -> list[DuplicateGroup]:
    """Groups of copies among n images (features float32 [n, dim]; readable bool [n]: facts
    known; paths: their files). Exact groups first, then near ones; each by its first member."""
    exact_groups = _exact(facts.content_hashes, readable)
    in_exact = {i: g for g, group in enumerate(exact_groups) for i in group}
    # One representative per exact group takes part in near matching.
    representative = readable.copy()
    for group in exact_groups:
        representative[group[1:]] = False
    pairs = _confirmed(_candidates(features, facts.perceptual_hashes, representative), facts, paths)
    groups = [DuplicateGroup(sorted(group), "exact", 1.0) for group in exact_groups]
    for component, worst in _components(pairs):
        members = set()
        for i in component:
            members.update(exact_groups[in_exact[i]] if i in in_exact else [i])
        groups.append(DuplicateGroup(sorted(members), "near", worst))
    return sorted(groups, key=lambda g: (g.kind != "exact", g.members[0]))


def _exact(content_hashes: list[str], readable: np.ndarray) -> list[list[int]]:
    by_hash = collections.defaultdict(list)
    for i, digest in enumerate(content_hashes):
        if readable[i] and digest:
            by_hash[digest].append(i)
    return [group for group in by_hash.values() if len(group) > 1]


def _candidates(features: np.ndarray, hashes: np.ndarray, usable: np.ndarray) -> set[tuple[int, int]]:
    """Pairs (i < j) worth checking: nearest neighbours by features, and hash-quarter buckets."""
    pairs = set()
    index = np.flatnonzero(usable)
    if len(index) < 2:
        return pairs
    unit = features[index].astype(np.float32)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    k = min(NEIGHBOURS + 1, len(index))
    block = max(16, min(4096, _BLOCK_VALUES // len(index)))
    for start in range(0, len(index), block):
        similarity = unit[start:start + block] @ unit.T  # [block, n]: bounded by _BLOCK_VALUES.
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        for row, neighbours in enumerate(nearest):
            i = index[start + row]
            for column in neighbours:
                j = index[column]
                if i != j and similarity[row, column] >= MIN_FEATURE_COSINE:
                    pairs.add((min(i, j), max(i, j)))
    for shift in (0, 16, 32, 48):
        buckets = collections.defaultdict(list)
        for i in index:
            buckets[int(hashes[i]) >> shift & 0xFFFF].append(i)
        for members in buckets.values():
            if 1 < len(members) <= MAX_BUCKET:
                pairs.update((a, b) for x, a in enumerate(members) for b in members[x + 1:])
    return pairs


def _confirmed(pairs: set[tuple[int, int]], facts: facts_lib.ImageFacts,
               paths: list[str]) -> list[tuple[int, int, float]]:
    """(i, j, similarity) of the candidate pairs that are near copies by their pixels."""
    close = _close_in_thumbnails(pairs, facts)
    pictures = {}

    def picture(i, side):
        if (i, side) not in pictures:
            pictures[i, side] = facts_lib.read_grey(paths[i], side)
        return pictures[i, side]

    found = []
    for i, j, similarity in close:
        # Never finer than the smaller image: upsampled pixels have no details of their own.
        smallest = min(facts.widths[i], facts.heights[i], facts.widths[j], facts.heights[j])
        side = int(np.clip(smallest, facts_lib.THUMB, CONFIRM_SIDE))
        a, b = picture(i, side), picture(j, side)
        if a is not None and b is not None and facts_lib.detail_correlation(a, b) >= MIN_CONFIRMED_CORRELATION:
            found.append((i, j, similarity))
    return found


def _close_in_thumbnails(pairs: set[tuple[int, int]], facts: facts_lib.ImageFacts) -> list[tuple[int, int, float]]:
    """(i, j, similarity) of the pairs whose hashes and 32x32 details agree."""
    if not pairs:
        return []
    ordered = np.asarray(sorted(pairs), np.int64)
    found = []
    for start in range(0, len(ordered), 20000):
        chunk = ordered[start:start + 20000]
        bits = facts_lib.hamming(facts.perceptual_hashes[chunk[:, 0]], facts.perceptual_hashes[chunk[:, 1]])
        close = bits <= MAX_HASH_BITS
        if not close.any():
            continue
        chunk, bits = chunk[close], bits[close]
        detail = facts_lib.detail_correlation(facts.thumbnails[chunk[:, 0]], facts.thumbnails[chunk[:, 1]])
        for (i, j), b, d in zip(chunk, bits, detail):
            if d >= MIN_DETAIL_CORRELATION:
                found.append((int(i), int(j), 1.0 - int(b) / 64.0))
    return found


def _components(pairs: list[tuple[int, int, float]]):
    """Connected components of the pairs: (members, the lowest similarity inside)."""
    parent = {}

    def root(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in pairs:
        parent[root(i)] = root(j)
    worst, members = {}, collections.defaultdict(list)
    for i, j, similarity in pairs:
        r = root(i)
        worst[r] = min(worst.get(r, 1.0), similarity)
    for x in list(parent):
        members[root(x)].append(x)
    return [(group, worst[r]) for r, group in members.items()]
