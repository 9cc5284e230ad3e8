"""Load a TF-Hub image feature-vector module and call it on batches of images.

One code path for every handle: ``tensorflow_hub`` resolves a tfhub.dev / Kaggle URL
(downloading into ``TFHUB_CACHE_DIR``) as well as a local SavedModel directory; a bare
Kaggle Models handle goes through kagglehub (``retrain[kaggle]``) when it is installed. TF2
SavedModels are called directly; TF1 Hub-format modules (retrain.py's default before)
through their ``image_feature_vector`` or ``default`` signature. The 2015 Inception v3
graph that the first retrain.py downloaded (``classify_image_graph_def.pb``) works as a
module too, fed as that script fed it.

Each loaded module carries a fingerprint of its files, so a cache can tell when the
weights behind a handle changed.
"""

import contextlib
import hashlib
import json
import os
import socket

import tensorflow as tf
from absl import logging

from retrain import config
from retrain.cache import layout
from retrain.data import storage
from retrain.errors import UserError, first_line
from retrain.module import handles, inception_2015, scan
from retrain.module.extractor import FeatureExtractor, feature_vectors

# Files whose bytes identify a SavedModel's graph and weights (the variables index
# holds a checksum of every tensor, so changed weights change it).
_FINGERPRINT_FILES = ("saved_model.pb", "saved_model.pbtxt", "variables/variables.index", "tfhub_module.pb")

_TF1_SIGNATURES = ("image_feature_vector", "default")

# Output sizes of ImageNet classification modules (1000 classes, or 1001 with "background").
CLASSIFICATION_SIZES = (1000, 1001)

# Per network operation (connect, each read) while resolving a URL, not for the whole download.
_NETWORK_TIMEOUT_SECONDS = 30


def load_for_run(run_config) -> FeatureExtractor:
    """The module a RetrainConfig names, its sizes recorded beside its cache; logs the
    device TensorFlow runs on and the module's input size, as every command that
    extracts does."""
    gpus = tf.config.list_physical_devices("GPU")
    logging.info("TensorFlow runs on %s.", f"{len(gpus)} GPU(s)" if gpus else "the CPU (no GPU found)")
    extractor = load_feature_extractor(
        run_config.tfhub_module, run_config.image_size, run_config.tfhub_cache_dir,
        facts_dir=run_config.bottleneck_dir, allow_unsafe_ops=run_config.allow_unsafe_ops,
    )
    logging.info("Using module %s with image size %dx%d.", run_config.tfhub_module, extractor.height, extractor.width)
    if extractor.feature_dim in CLASSIFICATION_SIZES:
        logging.info("Module %s gives %d values per image: probably a classification module's logits (ImageNet's classes), "
                     "used as the bottleneck. Try its feature-vector sibling beside it with retrain-compare.",
                     run_config.tfhub_module, extractor.feature_dim)
    return extractor


def load_feature_extractor(
    handle: str, image_size: int | None = None, cache_dir: str = "", facts_dir: str = "",
    allow_unsafe_ops: bool = False,
) -> FeatureExtractor:
    """The module at handle (URL, hub handle, local directory, or the 2015 Inception graph).

    Args:
      handle: what --tfhub_module names.
      image_size: the input size to use when the module does not fix one; when it
        does, it must agree. None falls back to 299 for such modules.
      cache_dir: where downloaded modules are kept ('' for TFHUB_CACHE_DIR or
        tensorflow_hub's default).
      facts_dir: a folder (the bottleneck cache) where the module's sizes are recorded
        under its fingerprint; when they are there, the module is only loaded once it
        is called. '' loads it now.
      allow_unsafe_ops: load it even when it holds operations outside the allowlist
        (module.scan); otherwise it is read and checked before it is ever loaded.

    Raises:
      UserError: the module cannot be loaded or is not an image feature vector.
      module.scan.UnsafeModelError: it holds operations that reach outside the model.
    """
    if handles.module_folder(handle) != handle:
        logging.info("%s is a file of a module: using its folder, %s.", handle, handles.module_folder(handle))
        handle = handles.module_folder(handle)
    if storage.basename(handle) == inception_2015.GRAPH_FILE or _is_graph_file(handle):
        return inception_2015.load(handle, image_size, allow_unsafe_ops=allow_unsafe_ops)
    location = _resolve(handle, cache_dir)
    fingerprint = module_fingerprint(location)
    facts_path = _facts_path(facts_dir, handle, image_size, fingerprint)

    def load():
        return _load_extract(handle, location, image_size, allow_unsafe_ops)[0]

    facts, loaded = _read_facts(facts_path), None
    if facts is None:
        loaded, facts = _load_extract(handle, location, image_size, allow_unsafe_ops)
        _write_facts(facts_path, facts)
    height, width, feature_dim = facts
    return FeatureExtractor(
        handle=handle,
        height=height,
        width=width,
        feature_dim=feature_dim,
        load=load,
        loaded=loaded,
        fingerprint=fingerprint,
        cache_name=handle,
    )


def _load_extract(handle: str, location: str, image_size: int | None,
                  allow_unsafe_ops: bool = False) -> tuple[tuple, tuple[int, int, int]]:
    """((the module's image -> features tf.function, the loaded module), (height, width, feature_dim))."""
    module = _load(handle, location, allow_unsafe_ops)
    call, fixed_size = _find_image_call(module, handle)
    if fixed_size and image_size and tuple(fixed_size) != (image_size, image_size):
        raise UserError(
            f"--image_size={image_size} does not match the input size "
            f"{fixed_size[0]}x{fixed_size[1]} that module {handle} requires."
        )
    height, width = fixed_size or (image_size or config.FALLBACK_IMAGE_SIZE,) * 2

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)], autograph=False)
    def extract(images):
        return feature_vectors(call(images))

    try:
        concrete = extract.get_concrete_function()
    except (ValueError, TypeError, tf.errors.OpError) as e:
        raise UserError(
            f"Module {handle} cannot be applied to float32 images of size {height}x{width}: "
            f"{first_line(e)}. Is it an image feature-vector module?"
        ) from e
    if concrete.structured_outputs.shape.rank != 2 or concrete.structured_outputs.shape[-1] is None:
        raise UserError(f"Module {handle} does not return a fixed-size feature vector.")
    return (extract, module), (height, width, int(concrete.structured_outputs.shape[-1]))


def _facts_path(facts_dir: str, handle: str, image_size: int | None, fingerprint: str) -> str:
    """Where a module's sizes are recorded: per handle, requested size and fingerprint ('' for none)."""
    return layout.module_file(facts_dir, "modules", handle, str(image_size or "auto"), fingerprint, ".json")


def _read_facts(path: str) -> tuple[int, int, int] | None:
    """(height, width, feature_dim) recorded at path, or None (missing, unreadable, damaged)."""
    if not path:
        return None
    try:
        facts = json.loads(storage.read_text(path))
        return tuple(int(facts[key]) for key in ("height", "width", "feature_dim"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_facts(path: str, facts: tuple[int, int, int]) -> None:
    if not path:
        return
    try:
        storage.write_text(path, json.dumps(dict(zip(("height", "width", "feature_dim"), facts))))
    except OSError:
        pass  # A read-only cache: later runs load the module to learn its sizes.


def module_fingerprint(location: str) -> str:
    """A digest of the files that define a module folder's graph and weights (hex); '' if none."""
    digest = hashlib.blake2b(digest_size=16)
    found = False
    for name in _FINGERPRINT_FILES:
        path = storage.join(location, *name.split("/"))
        try:
            contents = storage.read_bytes(path)
        except OSError:
            continue
        found = True
        digest.update(name.encode() + b"\0" + len(contents).to_bytes(8, "little") + contents)
    return digest.hexdigest() if found else ""


@contextlib.contextmanager
def _download_settings(cache_dir: str):
    """A network timeout for downloads, and cache_dir as TFHUB_CACHE_DIR, for the duration."""
    previous_timeout = socket.getdefaulttimeout()
    previous_cache = os.environ.get("TFHUB_CACHE_DIR")
    # Without a timeout an unreachable host can hang a download for minutes.
    socket.setdefaulttimeout(_NETWORK_TIMEOUT_SECONDS)
    if cache_dir:
        os.environ["TFHUB_CACHE_DIR"] = cache_dir
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous_timeout)
        if cache_dir:
            if previous_cache is None:
                os.environ.pop("TFHUB_CACHE_DIR", None)
            else:
                os.environ["TFHUB_CACHE_DIR"] = previous_cache


def _resolve(handle: str, cache_dir: str = "") -> str:
    """The local folder of the module at handle, downloading it first when it is a URL."""
    import tensorflow_hub as hub  # Imported here: it is slow and only needed for modules.

    kaggle = handles.kaggle_handle(handle)
    if kaggle is not None:
        return _resolve_kaggle(kaggle, cache_dir)
    looks_local = not handles.is_url(handle) and storage.is_local(handle)
    if looks_local and not os.path.exists(handle):
        raise handles.not_found(handle)
    try:
        with _download_settings(cache_dir):
            return hub.resolve(handle)
    except Exception as e:  # Network and file errors all end the run the same way, said for each.
        raise handles.download_failure(handle, e) from e


def _resolve_kaggle(handle: str, cache_dir: str) -> str:
    """The local folder of a Kaggle Models handle: through kagglehub (its cache, credentials,
    latest versions) when installed, else as its Kaggle Models URL through tensorflow_hub."""
    try:
        import kagglehub
    except ImportError:
        if not handles.has_version(handle):
            raise handles.unversioned_without_kagglehub(handle) from None
        try:
            import tensorflow_hub as hub

            with _download_settings(cache_dir):
                return hub.resolve(handles.kaggle_url(handle))
        except Exception as e:  # Network and file errors all end the run the same way, said for each.
            raise handles.download_failure(handle, e) from e
    try:
        with _download_settings(cache_dir):
            return kagglehub.model_download(handle)
    except Exception as e:  # kagglehub's, requests' and file errors: said for each.
        raise handles.download_failure(handle, e) from e


def _load(handle: str, location: str, allow_unsafe_ops: bool = False):
    """The module loaded from the folder that handle resolved to, once its operations are read
    and found safe (module.scan): loading alone runs a SavedModel's initializers."""
    import tensorflow_hub as hub

    scan.check_saved_model(location, handle, allow_unsafe_ops=allow_unsafe_ops)
    try:
        return hub.load(location)
    except Exception as e:  # Format and file errors all end the run the same way.
        raise handles.download_failure(handle, e) from e


def _is_graph_file(handle: str) -> bool:
    """A local .pb file (not a SavedModel folder, nor a file of one): a frozen graph given as the module."""
    return (handle.endswith(".pb") and storage.basename(handle) not in handles.MODULE_FILES
            and storage.is_local(handle) and os.path.isfile(handle))


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
