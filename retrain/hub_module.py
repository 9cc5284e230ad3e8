"""Load a TF-Hub image feature-vector module and call it on batches of images.

One code path for every handle: ``tensorflow_hub.load`` resolves a tfhub.dev / Kaggle URL
(downloading into ``TFHUB_CACHE_DIR``) as well as a local SavedModel directory. TF2
SavedModels are called directly; TF1 Hub-format modules (retrain.py's default before)
through their ``image_feature_vector`` or ``default`` signature.
"""

import dataclasses
import os
import socket
from typing import Callable

import tensorflow as tf

from retrain import config
from retrain.errors import UserError

_TF1_SIGNATURES = ("image_feature_vector", "default")

# Per network operation (connect, each read) while resolving a URL, not for the whole download.
_NETWORK_TIMEOUT_SECONDS = 30


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
    """A loaded module, ready to turn images into bottlenecks.

    Attributes:
      handle: the --tfhub_module string it was loaded from.
      height, width: the image size the module is fed.
      extract: float32 [batch, height, width, 3] in [0, 1] -> float32 [batch, dim].
        A tf.function, so it can also be called inside other tf.functions (the
        exported graph inlines it).
      module: the loaded object that owns the module's variables.
    """

    handle: str
    height: int
    width: int
    extract: Callable[[tf.Tensor], tf.Tensor]
    module: object

    @property
    def feature_dim(self) -> int:
        return int(self.extract.get_concrete_function().structured_outputs.shape[-1])


def load_feature_extractor(handle: str, image_size: int | None = None) -> FeatureExtractor:
    """Loads the module at handle (URL, hub handle or local directory).

    Args:
      handle: what --tfhub_module names.
      image_size: the input size to use when the module does not fix one; when it
        does, it must agree. None falls back to 299 for such modules.

    Raises:
      UserError: the module cannot be loaded or is not an image feature vector.
    """
    module = _load(handle)
    call, fixed_size = _find_image_call(module, handle)
    if fixed_size and image_size and tuple(fixed_size) != (image_size, image_size):
        raise UserError(
            f"--image_size={image_size} does not match the input size "
            f"{fixed_size[0]}x{fixed_size[1]} that module {handle} requires."
        )
    height, width = fixed_size or (image_size or config.FALLBACK_IMAGE_SIZE,) * 2

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)])
    def extract(images):
        features = call(images)
        if isinstance(features, dict):
            features = features["default"] if "default" in features else next(iter(features.values()))
        if features.shape.rank != 2:
            # Some modules keep 1x1 spatial axes: [batch, 1, 1, dim].
            features = tf.reshape(features, [-1, features.shape[1:].num_elements() or -1])
        return features

    try:
        concrete = extract.get_concrete_function()
    except (ValueError, TypeError, tf.errors.OpError) as e:
        raise UserError(
            f"Module {handle} cannot be applied to float32 images of size {height}x{width}: "
            f"{_first_line(e)}. Is it an image feature-vector module?"
        ) from e
    if concrete.structured_outputs.shape.rank != 2 or concrete.structured_outputs.shape[-1] is None:
        raise UserError(f"Module {handle} does not return a fixed-size feature vector.")
    return FeatureExtractor(handle=handle, height=height, width=width, extract=extract, module=module)


def _load(handle: str):
    import tensorflow_hub as hub  # Imported here: it is slow and only needed for loading.

    looks_local = not handle.startswith(("http://", "https://", "gs://"))
    if looks_local and not os.path.exists(handle):
        raise UserError(
            f"TF-Hub module '{handle}' not found: pass a module URL, or a local "
            "directory holding an unpacked module, with --tfhub_module."
        )
    previous_timeout = socket.getdefaulttimeout()
    # Without a timeout an unreachable host can hang a download for minutes.
    socket.setdefaulttimeout(_NETWORK_TIMEOUT_SECONDS)
    try:
        return hub.load(handle)
    except Exception as e:  # Network, format and file errors all end the run the same way.
        raise UserError(
            f"Could not load TF-Hub module '{handle}' ({_first_line(e)}). Download it once "
            "and pass its directory with --tfhub_module, or set TFHUB_CACHE_DIR to a "
            "cache that holds it."
        ) from e
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _find_image_call(module, handle: str):
    """The function that maps images to features, and its fixed (height, width) or None."""
    if callable(module):
        for concrete in _concrete_functions(module.__call__):
            args, _ = concrete.structured_input_signature
            if args:
                return module, _fixed_size(args[0].shape)
        return module, None
    signatures = getattr(module, "signatures", {})
    for name in _TF1_SIGNATURES:
        if name in signatures:
            signature = signatures[name]
            _, kwargs = signature.structured_input_signature
            if "images" not in kwargs:
                continue
            return (lambda images: signature(images=images)), _fixed_size(kwargs["images"].shape)
    raise UserError(
        f"Module {handle} is not an image feature-vector module: it is neither callable "
        f"nor has an image signature ({', '.join(_TF1_SIGNATURES)})."
    )


def _concrete_functions(function):
    try:
        return list(function.concrete_functions)
    except AttributeError:
        return []


def _fixed_size(shape: tf.TensorShape):
    if shape.rank == 4 and shape[1] is not None and shape[2] is not None:
        return int(shape[1]), int(shape[2])
    return None


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
