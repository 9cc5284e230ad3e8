"""The flags that choose the images, the split, the module and the cache.

Shared by ``retrain`` and ``retrain-cache``, so that the same command-line words fill
and use the same cache; each tool adds its own flags beside these.
"""

from absl import flags, logging

from retrain import config as config_lib
from retrain.commands import cli, legacy

_D = config_lib.RetrainConfig()

_IMAGE_DIR = flags.DEFINE_string("image_dir", _D.image_dir, "Path to folders of labeled images.")
_TESTING_PERCENTAGE = flags.DEFINE_integer(
    "testing_percentage", _D.split.testing_percentage, "What percentage of images to use as a test set."
)
_VALIDATION_PERCENTAGE = flags.DEFINE_integer(
    "validation_percentage", _D.split.validation_percentage, "What percentage of images to use as a validation set."
)
_BOTTLENECK_DIR = flags.DEFINE_string(
    "bottleneck_dir", _D.bottleneck_dir, "Path to cache bottleneck layer values as files."
)
_BOTTLENECK_BATCH_SIZE = flags.DEFINE_integer(
    "bottleneck_batch_size",
    _D.bottleneck_batch_size,
    "How many images go through the module at once while filling the bottleneck cache; "
    "the next batch is decoded meanwhile. On 2 CPU cores 16 runs Inception v3 as fast as "
    "32, with 250 MB less memory; larger batches may pay off on a GPU.",
)
_FLIP_LEFT_RIGHT = flags.DEFINE_boolean(
    "flip_left_right",
    _D.distortions.flip_left_right,
    "Whether to randomly flip half of the training images horizontally. Any distortion "
    "flag makes training distort every sample anew through the module (slow, as in "
    "retrain.py) unless --distorted_copies is set; validation and test images are never distorted.",
)
_RANDOM_CROP = flags.DEFINE_integer(
    "random_crop",
    _D.distortions.random_crop,
    "A percentage determining how much of a margin to randomly crop off the training images: "
    "the image is enlarged by (1 + C/100) and a window of the module's size is cut at a "
    "random place, so each sample keeps 1/(1 + C/100) of each side (50 keeps two thirds).",
)
_RANDOM_SCALE = flags.DEFINE_integer(
    "random_scale",
    _D.distortions.random_scale,
    "A percentage determining how much to randomly scale up the size of the training images "
    "by: a further zoom-in by a factor drawn from [1, 1 + S/100).",
)
_RANDOM_BRIGHTNESS = flags.DEFINE_integer(
    "random_brightness",
    _D.distortions.random_brightness,
    "A percentage determining how much to randomly multiply the training image input pixels "
    "up or down by: a factor drawn from [1 - B/100, 1 + B/100), not clipped.",
)
_DISTORTED_COPIES = flags.DEFINE_integer(
    "distorted_copies",
    _D.distortions.distorted_copies,
    "With distortion flags: compute K distorted copies of each training image once, cache "
    "them beside the bottlenecks (named after the copy and the distortion settings) and "
    "train on those: reruns are then as fast as undistorted ones. 0: distort anew at every step.",
)
_TFHUB_MODULE = flags.DEFINE_string(
    "tfhub_module",
    _D.tfhub_module,
    "Which TensorFlow Hub image feature-vector module to use: a URL, or a local directory "
    "holding an unpacked module (TF2 SavedModel, or TF1 Hub format with an "
    "image_feature_vector signature). URLs are downloaded once into TFHUB_CACHE_DIR.",
)
_ARCHITECTURE = flags.DEFINE_string(
    "architecture",
    None,
    "From the older retrain.py, still accepted: inception_v3 (the default module) or "
    "mobilenet_<1.0|0.75|0.50|0.25>_<224|192|160|128>[_quantized], mapped to the matching "
    "TF-Hub MobileNet V1 feature-vector module; the log says what it maps to. Prefer --tfhub_module.",
)
_MODEL_DIR = flags.DEFINE_string(
    "model_dir",
    None,
    "From the older retrain.py, still accepted: where downloaded modules are kept (as "
    "TFHUB_CACHE_DIR). If it holds classify_image_graph_def.pb, the 2015 Inception v3 graph "
    "the old script downloaded, that graph is used as the module.",
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size",
    _D.image_size,
    "Input height and width for modules that do not fix them in their signature "
    f"(default: the module's own size, else {config_lib.FALLBACK_IMAGE_SIZE}).",
)


_FAST_JPEG_DECODE = flags.DEFINE_boolean(
    "fast_jpeg_decode",
    _D.fast_jpeg_decode,
    "Decode large JPEGs (phone photos) at 1/2, 1/4 or 1/8 of their size in the JPEG decoder "
    "itself (the largest that keeps both sides at least the module's input size), then "
    "resize as usual: several times less decoding work, slightly different pixels. Cache "
    "entries made this way are named apart from exact ones; the exported models record it, "
    "so label-image and the SavedModel's serving_bytes decode the same way.",
)


def check() -> None:
    """Raises cli.UsageError, naming the flag, for values that cannot work."""
    for holder in (_TESTING_PERCENTAGE, _VALIDATION_PERCENTAGE):
        if not 0 <= holder.value <= 100:
            raise cli.UsageError(f"--{holder.name} must be between 0 and 100, not {holder.value}")
    if _TESTING_PERCENTAGE.value + _VALIDATION_PERCENTAGE.value >= 100:
        raise cli.UsageError(
            "--testing_percentage plus --validation_percentage must be below 100, leaving images for training"
        )
    if _BOTTLENECK_BATCH_SIZE.value <= 0:
        raise cli.UsageError(f"--bottleneck_batch_size must be positive, not {_BOTTLENECK_BATCH_SIZE.value}")
    if _IMAGE_SIZE.value is not None and _IMAGE_SIZE.value <= 0:
        raise cli.UsageError(f"--image_size must be positive, not {_IMAGE_SIZE.value}")
    for holder in (_RANDOM_CROP, _RANDOM_SCALE, _RANDOM_BRIGHTNESS):
        if holder.value < 0:
            raise cli.UsageError(f"--{holder.name} must be 0 or positive, not {holder.value}")
    if _DISTORTED_COPIES.value < 0:
        raise cli.UsageError(f"--distorted_copies must be 0 or positive, not {_DISTORTED_COPIES.value}")
    distorting = _FLIP_LEFT_RIGHT.value or _RANDOM_CROP.value or _RANDOM_SCALE.value or _RANDOM_BRIGHTNESS.value
    if _DISTORTED_COPIES.value and not distorting:
        raise cli.UsageError(
            "--distorted_copies needs a distortion: --flip_left_right, --random_crop, --random_scale or --random_brightness"
        )
    if _RANDOM_BRIGHTNESS.value > 100:
        raise cli.UsageError(f"--random_brightness must be at most 100, not {_RANDOM_BRIGHTNESS.value}")


def _module() -> legacy.LegacyChoice:
    """--tfhub_module, or what the older --architecture and --model_dir mean (logged)."""
    given = _TFHUB_MODULE.value if _TFHUB_MODULE.present else None
    try:
        choice = legacy.resolve(_ARCHITECTURE.value, _MODEL_DIR.value, given)
    except ValueError as e:
        raise cli.UsageError(str(e)) from e
    for message in choice.messages:
        logging.info("%s", message)
    return choice


def settings() -> dict:
    """The RetrainConfig fields these flags set, checked (see check())."""
    check()
    module = _module()
    return dict(
        image_dir=_IMAGE_DIR.value,
        tfhub_module=module.tfhub_module,
        image_size=_IMAGE_SIZE.value or module.image_size,
        tfhub_cache_dir=module.tfhub_cache_dir,
        bottleneck_dir=_BOTTLENECK_DIR.value,
        bottleneck_batch_size=_BOTTLENECK_BATCH_SIZE.value,
        fast_jpeg_decode=_FAST_JPEG_DECODE.value,
        split=config_lib.SplitConfig(
            testing_percentage=_TESTING_PERCENTAGE.value,
            validation_percentage=_VALIDATION_PERCENTAGE.value,
        ),
        distortions=config_lib.DistortionConfig(
            flip_left_right=_FLIP_LEFT_RIGHT.value,
            random_crop=_RANDOM_CROP.value,
            random_scale=_RANDOM_SCALE.value,
            random_brightness=_RANDOM_BRIGHTNESS.value,
            distorted_copies=_DISTORTED_COPIES.value,
        ),
    )
