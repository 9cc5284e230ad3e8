"""What each image file is, apart from what it shows: its format, size, colour, and a small
picture of its pixels to tell copies from look-alikes.

Read once per image, with JPEGs decoded at a reduced scale in the decoder itself (Pillow's
draft mode: 1/2 to 1/8 of the work), on a pool of threads (Pillow releases the GIL while
decoding). Per image this keeps 1 KB (a 32x32 greyscale thumbnail), so 100,000 images
hold about 100 MB.
"""

import concurrent.futures
import dataclasses
import hashlib
import io
import os

import numpy as np

from retrain.data import storage

THUMB = 32  # Side of the greyscale thumbnail kept per image.
_DCT = None


@dataclasses.dataclass
class ImageFacts:
    """Per image facts of n images (arrays of n rows); unreadable images have width 0.

    Attributes:
      formats: Pillow's format name per image ('JPEG', 'PNG', ...; '' when unreadable).
      widths, heights: int [n] pixels as stored (before EXIF rotation).
      file_bytes: int [n] file sizes.
      mean_rgb: float32 [n, 3] mean colour in [0, 255].
      contrast: float32 [n] standard deviation of the grey levels, in [0, 127.5]: ~0 is blank.
      content_hashes: the SHA-256 of each file's bytes (hex): equal means the same file.
      thumbnails: uint8 [n, THUMB, THUMB] greyscale, the whole image squeezed (aspect not kept).
      perceptual_hashes: uint64 [n] DCT hashes of the thumbnails: near copies differ in few bits.
    """

    formats: list[str]
    widths: np.ndarray
    heights: np.ndarray
    file_bytes: np.ndarray
    mean_rgb: np.ndarray
    contrast: np.ndarray
    content_hashes: list[str]
    thumbnails: np.ndarray
    perceptual_hashes: np.ndarray


def read_facts(paths: list[str], progress=None, threads: int | None = None) -> ImageFacts:
    """ImageFacts of every path, in order; progress(count) is called as images are done."""
    n = len(paths)
    facts = ImageFacts(
        formats=[""] * n, widths=np.zeros(n, np.int64), heights=np.zeros(n, np.int64),
        file_bytes=np.zeros(n, np.int64), mean_rgb=np.zeros((n, 3), np.float32), contrast=np.zeros(n, np.float32),
        content_hashes=[""] * n, thumbnails=np.zeros((n, THUMB, THUMB), np.uint8),
        perceptual_hashes=np.zeros(n, np.uint64),
    )
    workers = threads or min(8, (os.cpu_count() or 1) + 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for i, found in enumerate(pool.map(_one, paths, chunksize=16)):
            if found is not None:
                (facts.formats[i], facts.widths[i], facts.heights[i], facts.file_bytes[i], facts.mean_rgb[i],
                 facts.contrast[i], facts.content_hashes[i], facts.thumbnails[i]) = found
                facts.perceptual_hashes[i] = perceptual_hash(facts.thumbnails[i])
            if progress is not None:
                progress(1)
    return facts


def _one(path: str):
    from PIL import Image

    try:
        contents = storage.read_bytes(path)
        with Image.open(io.BytesIO(contents)) as image:
            image_format, (width, height) = image.format or "", image.size
            image.draft("RGB", (THUMB * 4, THUMB * 4))  # JPEG only: decode at a reduced scale.
            rgb = np.asarray(image.convert("RGB").resize((THUMB * 2, THUMB * 2), Image.BILINEAR), np.float32)
    except Exception:  # Pillow raises many types for damaged files; such files are reported elsewhere.
        return None
    grey = rgb @ np.asarray([0.299, 0.587, 0.114], np.float32)
    thumbnail = grey.reshape(THUMB, 2, THUMB, 2).mean(axis=(1, 3))
    return (image_format, width, height, len(contents), rgb.reshape(-1, 3).mean(axis=0), float(grey.std()),
            hashlib.sha256(contents).hexdigest(), np.clip(thumbnail + 0.5, 0, 255).astype(np.uint8))


def read_grey(path: str, side: int) -> np.ndarray | None:
    """float32 [side, side] greyscale of the whole image squeezed to a square (JPEGs decoded
    at a reduced scale), or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(storage.read_bytes(path))) as image:
            image.draft("RGB", (side * 2, side * 2))
            return np.asarray(image.convert("L").resize((side, side), Image.BILINEAR), np.float32)
    except Exception:  # Pillow raises many types for damaged files.
        return None


def perceptual_hash(thumbnail: np.ndarray) -> np.uint64:
    """The 64-bit DCT hash of a THUMB x THUMB greyscale image: the signs of its 8x8 lowest
    frequencies (but the mean) against their median. Re-encoding, resizing and a brightness
    change keep it within a few bits; another picture differs in about half."""
    global _DCT
    if _DCT is None:
        k = np.arange(THUMB)
        _DCT = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * THUMB)).astype(np.float64)
    low = (_DCT @ thumbnail.astype(np.float64) @ _DCT.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    bits[0] = False
    return np.uint64(int("".join("1" if bit else "0" for bit in bits), 2))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes (arrays of the same shape): int [...], 0-64."""
    x = np.atleast_1d(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))
    counts = np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)
    return counts if np.ndim(a) or np.ndim(b) else int(counts[0])


def detail_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How alike greyscale images' details are, in [-1, 1]: the correlation of each minus its
    3x3 blur, for [..., side, side] pairs (a[i] with b[i]). A re-saved, resized or brightened
    copy keeps its details; a look-alike (same kind of object, same framing) has its own,
    once the side is large enough to see them (see doctor.duplicates)."""
    da, db = _details(a), _details(b)
    numerator = (da * db).sum(axis=(-1, -2))
    denominator = np.sqrt((da * da).sum(axis=(-1, -2)) * (db * db).sum(axis=(-1, -2)))
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-12), 0.0)


def _details(thumbnails: np.ndarray) -> np.ndarray:
    x = np.asarray(thumbnails, np.float32)
    height, width = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)]
    padded = np.pad(x, pad, mode="edge")
    blurred = sum(padded[..., i:i + height, j:j + width] for i in range(3) for j in range(3)) / 9.0
    detail = x - blurred
    return detail - detail.mean(axis=(-1, -2), keepdims=True)
