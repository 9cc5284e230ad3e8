"""Training modes: how the training data is made, chosen once from the config.

A mode turns the config, the image lists and the module into TrainingData: the
examples that training steps draw from (through the one sampler, training.sampler),
the validation and test bottlenecks, and what was skipped. Each mode is one module of
this package with two functions, and optionally a third,

  training_images(config) -> cache.plan.TrainingImages   what the cache keeps of training images
  training_data(context: ModeContext) -> TrainingData
  refine(model, context, data) -> (TrainedModel, report)  what it makes of the trained head

and one entry in MODES; the module is imported only when chosen. retrain-cache asks
the same mode what to cache, so a fill and a run never disagree.
"""

import dataclasses
import functools
import importlib

import numpy as np

from retrain.cache import fill, plan
from retrain.cache.sets import Bottlenecks, BottleneckSet
from retrain.config import RetrainConfig
from retrain.data import module_inputs
from retrain.data.image_lists import ImageLists
from retrain.data.preprocessing import Preprocessing
from retrain.errors import UserError
from retrain.module import devices
from retrain.module.extractor import FeatureExtractor

# Mode name -> the module that makes its training data.
MODES = {
    "cached": "retrain.training.cached",
    "distorted_copies": "retrain.training.distorted_copies",
    "live_distortions": "retrain.training.live_distortions",
    "fine_tune": "retrain.training.fine_tune",
}


def mode_name(config: RetrainConfig) -> str:
    """The one place the mode is chosen: --fine_tune first; else cached bottlenecks unless
    distortions are asked for; then cached distorted copies when --distorted_copies is
    set, else distortion at every step, as retrain.py did."""
    if config.fine_tune.enabled:
        return "fine_tune"
    distortions = config.distortions
    if not distortions.enabled:
        return "cached"
    return "distorted_copies" if distortions.distorted_copies else "live_distortions"


def for_config(config: RetrainConfig):
    """The mode module that makes config's training data (see the module docstring)."""
    return importlib.import_module(MODES[mode_name(config)])


@dataclasses.dataclass
class TrainingData:
    """What a mode gives training.

    Attributes:
      examples: what training steps draw from (training.trainer.Examples): a
        BottleneckSet when the bottlenecks are fixed, or examples made anew per draw.
      validation, testing: the held-out bottlenecks (never distorted).
      failed_images: (path, reason) of files that are not readable images.
      computed, reused: bottlenecks computed by the module now, and read from the cache.
      timed_images, timed_seconds: the extraction rate's measure (cache.sets.Bottlenecks).
      mode_state: what the mode keeps between training_data and refine.
    """

    examples: object
    validation: BottleneckSet
    testing: BottleneckSet
    failed_images: list[tuple[str, str]]
    computed: int = 0
    reused: int = 0
    timed_images: int = 0
    timed_seconds: float = 0.0
    mode_state: object = None

    @classmethod
    def held_out_from(cls, found: Bottlenecks, examples=None) -> "TrainingData":
        """The validation and test sets (and what was skipped and counted) of a fill."""
        return cls(examples, found.sets["validation"], found.sets["testing"], list(found.failed_images),
                   found.computed, found.reused, found.timed_images, found.timed_seconds)

    def add(self, found: Bottlenecks) -> None:
        """Counts another fill's work and skipped files into this one."""
        self.failed_images += found.failed_images
        self.computed += found.computed
        self.reused += found.reused
        self.timed_images += found.timed_images
        self.timed_seconds += found.timed_seconds

    @property
    def extraction_rate(self) -> float | None:
        """Images per second the module computed bottlenecks at (decoding included), or None
        when too few were computed to time (a warm cache)."""
        return self.timed_images / self.timed_seconds if self.timed_images and self.timed_seconds > 0 else None

    def check_enough_classes(self, image_dir: str) -> None:
        """Raises UserError unless at least two classes have training examples."""
        classes = len(np.unique(self.examples.labels))
        if classes < 2:
            raise UserError(
                f"Only {classes} class(es) have training images under {image_dir}; "
                "at least two are needed. Add images or lower the testing and validation percentages."
            )


@dataclasses.dataclass
class ModeContext:
    """What every mode works from: the run's settings, images, module and decoding."""

    config: RetrainConfig
    lists: ImageLists
    extractor: FeatureExtractor
    preprocessing: Preprocessing
    seed: int

    def entry_groups(self, training: plan.TrainingImages) -> list[list[plan.CacheEntry]]:
        """The cache entries of this run (cache.plan.entry_groups), in the order they are filled."""
        return plan.entry_groups(
            self.lists, bottleneck_dir=self.config.bottleneck_dir, module_name=self.extractor.cache_name,
            tag=self.preprocessing.cache_tag, training=training,
        )

    @functools.cached_property
    def extract(self):
        """float32 [batch, height, width, 3] -> float32 [batch, dim] numpy, split across devices.

        Through a lambda: the module is loaded only if some bottleneck has to be computed.
        """
        return devices.split_across(lambda batch: self.extractor.extract(batch), devices.parallel_devices())

    def fill_from_files(self, entries: list[plan.CacheEntry]) -> Bottlenecks:
        """fill, each entry's image decoded from its file as the cache decodes it (the plain bottlenecks)."""
        decode = module_inputs.module_input_decoder(self.preprocessing, self.config.bottleneck_batch_size, hint=True)
        return self.fill(entries, lambda todo: decode([entry.image_path for entry in todo]))

    def fill(self, entries: list[plan.CacheEntry], decode) -> Bottlenecks:
        """The bottlenecks of entries, read or computed (cache.fill.fill) by this run's module.

        decode: CacheEntries -> DecodedBatches of module inputs (data.batching).
        """
        return fill.fill(
            entries,
            dim=self.extractor.feature_dim,
            decode=decode,
            extract=self.extract,
            bottleneck_dir=self.config.bottleneck_dir,
            module_handle=self.extractor.cache_name,
            module_fingerprint=self.extractor.fingerprint,
            source=self.extractor.identity,
        )


def refined(mode, model, context: ModeContext, data: TrainingData) -> tuple[object, object]:
    """What the mode makes of the model with the trained head: its refine (fine_tune trains
    the module too, on images), or the model as it is; (model, the mode's report or None)."""
    refine = getattr(mode, "refine", None)
    return (model, None) if refine is None else refine(model, context, data)
