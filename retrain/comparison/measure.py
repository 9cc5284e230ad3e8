"""What a module's classifier costs and how honest its scores are, measured as it is deployed.

Speed is the exported frozen graph's, run as label-image runs it (a TF1 session on this
machine, all its cores): the latency of one image, and the throughput of a batch. The
calibration error is on the held-out images (test, else validation) with the scores
the model gives (calibrated when the run calibrated it).
"""

import dataclasses
import time

import numpy as np

from retrain import inference
from retrain.data import storage
from retrain.evaluation import calibration
from retrain.scoring import softmax

# Runs of batch 1 timed after the warm-up: at least this many, more while under the budget.
MIN_RUNS = 10
MAX_RUNS = 50
TIME_BUDGET_SECONDS = 3.0
WARM_UP_RUNS = 3


@dataclasses.dataclass(frozen=True)
class GraphSpeed:
    """The exported graph's speed on this machine.

    Attributes:
      latency_ms: median milliseconds to classify one image (batch 1, decoded and resized).
      latency_spread_ms: (10th, 90th percentile) of those runs, in ms.
      runs: how many batch-1 runs were timed.
      batch_size: images per run for the throughput.
      images_per_second: throughput at batch_size (the median of 3 runs).
    """

    latency_ms: float
    latency_spread_ms: tuple[float, float]
    runs: int
    batch_size: int
    images_per_second: float


def graph_speed(graph_path: str, output_layer: str, height: int, width: int, batch_size: int) -> GraphSpeed:
    """Times the frozen graph at graph_path on random pixels of its input size (float32 [n, h, w, 3])."""
    classifier = inference.FrozenGraphClassifier(
        graph_path, storage.read_bytes(graph_path), "Placeholder", output_layer, height, width)
    try:
        rng = np.random.default_rng(0)
        one = rng.random((1, height, width, 3), dtype=np.float32)
        batch = rng.random((batch_size, height, width, 3), dtype=np.float32)
        for _ in range(WARM_UP_RUNS):
            classifier.scores(one)
        times = []
        started = time.perf_counter()
        while len(times) < MAX_RUNS and (len(times) < MIN_RUNS or time.perf_counter() - started < TIME_BUDGET_SECONDS):
            start = time.perf_counter()
            classifier.scores(one)
            times.append(time.perf_counter() - start)
        classifier.scores(batch)
        batch_times = []
        for _ in range(3):
            start = time.perf_counter()
            classifier.scores(batch)
            batch_times.append(time.perf_counter() - start)
    finally:
        classifier.close()
    milliseconds = np.asarray(times) * 1000.0
    return GraphSpeed(
        latency_ms=float(np.median(milliseconds)),
        latency_spread_ms=(float(np.percentile(milliseconds, 10)), float(np.percentile(milliseconds, 90))),
        runs=len(times),
        batch_size=batch_size,
        images_per_second=batch_size / float(np.median(batch_times)),
    )


def expected_calibration_error(model) -> tuple[float | None, str]:
    """(The expected calibration error of model's scores on its held-out images, or None
    without any; which images: 'testing' or 'validation')."""
    held = model.held_out
    if held is None:
        return None, ""
    temperature = model.calibration.temperature if model.calibration else 1.0
    scores = softmax(model.logits(held.images), temperature)
    return calibration.expected_calibration_error(scores, held.images.labels), held.category
