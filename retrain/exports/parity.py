"""A converted model checked against the trained one, on images it never trained on.

Right after a format is written (TFLite, ONNX, the web page's model), it is run on the
held-out images (test, else validation) and its answers compared with the model's own
(model.TrainedModel.scores: what the frozen graph computes), logged as one line:

  TFLite (int8) agrees with output_graph.pb on 98.9% of 364 test images; largest score difference 0.031; ...
"""

import dataclasses
from typing import Callable, Iterator

import numpy as np
from absl import logging

from retrain.data import storage
from retrain.runtime.progress import Progress


@dataclasses.dataclass(frozen=True)
class Parity:
    """How a converted model's answers compare with the trained model's on held-out images.

    Attributes:
      category: 'testing' or 'validation', the images compared on.
      count: how many images were compared.
      agreement: share of them with the same top label, in [0, 1].
      max_score_difference: largest absolute difference of any score.
      accuracy: the converted model's accuracy on them; reference_accuracy: the trained model's.
      conversion_seconds: time to convert.
      size_bytes: size of the file written.
      quantization: the TFLite model's ('float', 'float16', 'int8'), '' for other formats.
    """

    category: str
    count: int
    agreement: float
    max_score_difference: float
    accuracy: float
    reference_accuracy: float
    conversion_seconds: float = 0.0
    size_bytes: int = 0
    quantization: str = ""


def measure(model, batches: Callable[[list[str]], Iterator[tuple[list[int], np.ndarray]]], description: str,
            **facts) -> Parity | None:
    """Compares a converted model with model on model.held_out; None without held-out images.

    Args:
      batches: held-out image paths -> (positions, the converted model's float [n, classes]
        scores) per batch, each format decoding the files as its users will.
      description: for the progress bar ("Checking the TFLite model").
      facts: more Parity fields (size_bytes, quantization).
    """
    held_out = model.held_out
    if held_out is None or not held_out.image_paths:
        return None
    chosen, scores = [], []
    with Progress(len(held_out.image_paths), description) as progress:
        for positions, batch_scores in batches(held_out.image_paths):
            chosen.extend(positions)
            scores.append(np.asarray(batch_scores, np.float32))
            progress.update(len(positions))
    if not chosen:
        return None
    converted = np.concatenate(scores)
    reference = model.scores(held_out.images.subset(chosen))
    truth = held_out.labels[chosen]
    return Parity(
        category=held_out.category,
        count=len(chosen),
        agreement=float(np.mean(converted.argmax(1) == reference.argmax(1))),
        max_score_difference=float(np.abs(converted - reference).max()),
        accuracy=float(np.mean(converted.argmax(1) == truth)),
        reference_accuracy=float(np.mean(reference.argmax(1) == truth)),
        **facts,
    )


def finish(parity: Parity | None, conversion_seconds: float, *, name: str, kind: str, output_graph: str,
           min_agreement: float, advice: str) -> Parity | None:
    """What every export does with its check: records the conversion time in it, and logs the
    one line comparing the format (name, e.g. 'TFLite (int8)') with the frozen graph, and a
    warning naming "the <kind> model" below min_agreement. Returns the Parity (None: no images)."""
    if parity is not None:
        parity = dataclasses.replace(parity, conversion_seconds=conversion_seconds)
    _log(parity, name, kind, output_graph, min_agreement=min_agreement, advice=advice)
    return parity


def _log(parity: Parity | None, name: str, kind: str, output_graph: str, *, min_agreement: float, advice: str) -> None:
    """The one line comparing a format with the frozen graph, and a warning below min_agreement."""
    if parity is None:
        logging.warning("No test or validation images: the %s model's agreement with the frozen graph is not measured.",
                        kind)
        return
    graph_name = storage.basename(output_graph) if output_graph else "the frozen graph"
    set_name = "test" if parity.category == "testing" else "validation"
    logging.info(
        "%s agrees with %s on %.1f%% of %d %s images; largest score difference %.3f; %s accuracy %.1f%% vs %.1f%%",
        name, graph_name, parity.agreement * 100, parity.count, set_name, parity.max_score_difference, set_name,
        parity.accuracy * 100, parity.reference_accuracy * 100,
    )
    if parity.agreement < min_agreement:
        logging.warning("The %s model agrees with the frozen graph on only %.1f%% of the %s images: %s.",
                        kind, parity.agreement * 100, set_name, advice)
