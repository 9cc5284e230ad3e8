"""A feature-vector module, ready to turn images into bottlenecks: what every stage holds of it.

Loaded lazily: what a run needs to find its cache (sizes, fingerprint) is known before
the module is loaded, so a warm run that computes nothing never spends the seconds
loading Inception v3's weights (module.hub records the sizes beside the cache).
"""

import threading
from typing import Callable

import tensorflow as tf


class FeatureExtractor:
    """A module, ready to turn images into bottlenecks; loaded when first called.

    What a run needs to find its cache (sizes, fingerprint) is known before the module
    is loaded: a warm run that computes nothing never spends the seconds loading
    Inception v3's weights.

    Attributes:
      handle: the --tfhub_module string it was loaded from.
      height, width: the image size the module is fed.
      feature_dim: the length of its feature vectors.
      fingerprint: a digest of the module's files: another one at the same handle
        means other weights (hex, '' when unknown).
      cache_name: the module's part of cache file names (the handle, or the name
        retrain.py gave the 2015 Inception graph).
      extract: float32 [batch, height, width, 3] in [0, 1] -> float32 [batch, dim].
        A tf.function, so it can also be called inside other tf.functions (the
        exported graph inlines it). Loads the module on first use.
      module: the loaded object that owns the module's variables (loads it too).
      identity: names these exact weights for the run: bottlenecks it computed may be
        used for a model only while its module has the same identity (a module tuned
        in this process gets a new one).
      tuned: a copy loaded to be trained (loaded_anew): its weights are the run's own.
    """

    def __init__(self, *, handle: str, height: int, width: int, feature_dim: int, load: Callable[[], tuple] | None,
                 loaded: tuple | None = None, fingerprint: str = "", cache_name: str = "", tuned: bool = False):
        """load: () -> (extract, module), called once when either is first needed, unless
        loaded already holds them (a module that cannot be loaded anew has None)."""
        self.handle = handle
        self.height = height
        self.width = width
        self.feature_dim = feature_dim
        self.fingerprint = fingerprint
        self.cache_name = cache_name
        self.tuned = tuned
        self._load = load
        self._loaded = loaded
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        return self.fingerprint or f"unfingerprinted-{id(self):x}"

    @property
    def loaded(self) -> bool:
        """Whether the module's graph and weights are in memory."""
        return self._loaded is not None

    @property
    def extract(self) -> Callable[[tf.Tensor], tf.Tensor]:
        return self._parts()[0]

    @property
    def module(self) -> object:
        return self._parts()[1]

    def loaded_anew(self) -> "FeatureExtractor":
        """The same module loaded again, with variables of its own (to train them).

        What is keyed by this module's fingerprint (cache entries, frozen graphs, sizes)
        can never serve the copy: it has no fingerprint, so its identity is its own.

        Raises:
          ValueError: the module cannot be loaded anew (a frozen graph given as the module).
        """
        if self._load is None:
            raise ValueError(f"module {self.handle} cannot be loaded anew")
        return FeatureExtractor(handle=self.handle, height=self.height, width=self.width,
                                feature_dim=self.feature_dim, load=self._load, loaded=self._load(),
                                cache_name=self.cache_name, tuned=True)

    def _parts(self) -> tuple:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded


def feature_vectors(outputs) -> tf.Tensor:
    """float32 [batch, dim]: the feature vectors in what a module's call returns (a tensor, or
    a dict whose 'default' or only entry is), flattened where it keeps 1x1 spatial axes
    ([batch, 1, 1, dim])."""
    if isinstance(outputs, dict):
        outputs = outputs["default"] if "default" in outputs else next(iter(outputs.values()))
    if outputs.shape.rank != 2:
        outputs = tf.reshape(outputs, [-1, outputs.shape[1:].num_elements() or -1])
    return outputs
