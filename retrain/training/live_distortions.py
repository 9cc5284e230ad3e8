"""Mode "live_distortions" (distortion flags without --distorted_copies): every training
sample is distorted anew at every step and goes through the module, as in retrain.py.

Each step costs a forward pass of the module over the batch; the decoded images stay in
memory (up to a quarter of the RAM) so that a step decodes nothing, and samples are
distorted on several threads.
"""

import concurrent.futures
import functools
import os

import numpy as np
from absl import logging

from retrain.cache import plan
from retrain.config import RetrainConfig
from retrain.data import batching, distortions
from retrain.data.images import read_image
from retrain.runtime.progress import Progress
from retrain.training.modes import ModeContext, TrainingData


def training_images(config: RetrainConfig) -> plan.TrainingImages:
    del config  # Training images are distorted anew at every step: nothing of them is cached.
    return plan.NOT_CACHED


def training_data(context: ModeContext) -> TrainingData:
    """Validation and test undistorted from the cache; training images decoded once, kept."""
    (held_out,) = context.entry_groups(plan.NOT_CACHED)
    data = TrainingData.held_out_from(context.fill_from_files(held_out))
    logging.info("Distorting training images at every step (slow: a module pass per sample).")
    config, extractor = context.config, context.extractor
    training = plan.entries(context.lists, bottleneck_dir=config.bottleneck_dir, module_name=extractor.cache_name,
                            categories=("training",))
    workers = os.cpu_count() or 1
    kept, positions, failed = decode_training_images(
        [entry.image_path for entry in training], budget_bytes=memory_budget_bytes(), workers=workers
    )
    data.failed_images += failed
    data.examples = DistortedExamples(
        images=kept,
        labels=[training[i].label_index for i in positions],
        distorter=distortions.Distorter(config.distortions, extractor.height, extractor.width),
        extract=context.extract,
        dim=extractor.feature_dim,
        seed=context.seed,
        workers=workers,
    )
    return data


def memory_budget_bytes() -> int:
    """How much decoded training imagery to keep in memory: a quarter of the RAM."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 2**31


def decode_training_images(
    paths: list[str], *, budget_bytes: int, workers: int
) -> tuple[list[np.ndarray | str], list[int], list[tuple[str, str]]]:
    """Decodes every training image once, keeping the pixels while they fit the budget.

    Returns:
      (per usable image its uint8 [h, w, 3] pixels, or its path once the budget is
      spent, to be decoded again when drawn; the positions of those images in
      paths; [(path, reason)] for files that are not readable images).
    """
    kept, positions, failed = [], [], []
    used = 0

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        with Progress(len(paths), "Decoding training images") as progress:
            for position, (pixels, error) in enumerate(pool.map(functools.partial(batching.load_or_error, read_image), paths)):
                progress.update()
                if error is not None:
                    logging.warning("Skipping %s", error)
                    failed.append((paths[position], error))
                    continue
                used += pixels.nbytes
                kept.append(pixels if used <= budget_bytes else paths[position])
                positions.append(position)
    return kept, positions, failed


class DistortedExamples:
    """Training examples made anew at each draw: the image distorted, then through the module.

    Attributes:
      labels: int64 [n]; dim: the module's feature count; features: None (not fixed).
    """

    features = None

    def __init__(self, *, images, labels, distorter: distortions.Distorter, extract, dim: int, seed: int, workers: int):
        """images: per example its uint8 [h, w, 3] pixels, or its path (decoded when drawn)."""
        self.images = images
        self.labels = np.asarray(labels, np.int64)
        self.dim = dim
        self.distorter = distorter
        self.extract = extract
        self.rng = np.random.default_rng(seed)  # Each sample's distortion seed.
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)

    def bottlenecks(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), dim]: each row's image freshly distorted, through the module."""
        seeds = self.rng.integers(0, 2**62, size=(len(rows), 2))

        def one(i):
            image = self.images[rows[i]]
            pixels = read_image(image) if isinstance(image, str) else image
            return self.distorter(pixels, seeds[i])

        batch = np.stack(list(self.pool.map(one, range(len(rows)))))
        return np.asarray(self.extract(batch), np.float32)
