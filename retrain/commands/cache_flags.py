"""The flags that choose the images, the split, the module and the cache.

Shared by ``retrain`` and ``retrain-cache`` (and every tool that reads the same cache),
so that the same command-line words fill and use the same cache; each tool defines them
in its own flags (DataFlags) and adds its own beside them.
"""

from absl import flags, logging

from retrain import config as config_lib
from retrain.commands import cli, legacy

_D = config_lib.RetrainConfig()


class DataFlags:
    """These flags, defined in one command's FlagValues (listed under this module in --help).

    With several_modules (retrain-compare), --tfhub_module may be repeated and
    module_choices() gives one per module; settings() then leaves the module out.
    """

    def __init__(self, flag_values: flags.FlagValues, several_modules: bool = False):
        own = dict(flag_values=flag_values, module_name=__name__)
        self.several_modules = several_modules
        self.image_dir = flags.DEFINE_string("image_dir", _D.image_dir, "Path to folders of labeled images.", **own)
        self.testing_percentage = flags.DEFINE_integer(
            "testing_percentage", _D.split.testing_percentage, "What percentage of images to use as a test set.",
            **own,
        )
        self.validation_percentage = flags.DEFINE_integer(
            "validation_percentage", _D.split.validation_percentage, "What percentage of images to use as a validation set.",
            **own,
        )
        self.exclude_list = flags.DEFINE_string(
            "exclude_list", _D.split.exclude_list,
            "A file listing images to leave out of every set, one path relative to --image_dir a line "
            "(retrain-doctor's exclude.txt; '#' starts a comment). The folder is not touched, and every "
            "other image keeps its set. The log says how many were left out.",
            **own,
        )
        self.bottleneck_dir = flags.DEFINE_string(
            "bottleneck_dir", _D.bottleneck_dir, "Path to cache bottleneck layer values as files.",
            **own,
        )
        self.bottleneck_batch_size = flags.DEFINE_integer(
            "bottleneck_batch_size",
            _D.bottleneck_batch_size,
            "How many images go through the module at once while filling the bottleneck cache; "
            "the next batch is decoded meanwhile. On 2 CPU cores 16 runs Inception v3 as fast as "
            "32, with 250 MB less memory; larger batches may pay off on a GPU.",
            **own,
        )
        self.flip_left_right = flags.DEFINE_boolean(
            "flip_left_right",
            _D.distortions.flip_left_right,
            "Whether to randomly flip half of the training images horizontally. Any distortion "
            "flag makes training distort every sample anew through the module (slow, as in "
            "retrain.py) unless --distorted_copies is set; validation and test images are never distorted.",
            **own,
        )
        self.random_crop = flags.DEFINE_integer(
            "random_crop",
            _D.distortions.random_crop,
            "A percentage determining how much of a margin to randomly crop off the training images: "
            "the image is enlarged by (1 + C/100) and a window of the module's size is cut at a "
            "random place, so each sample keeps 1/(1 + C/100) of each side (50 keeps two thirds).",
            **own,
        )
        self.random_scale = flags.DEFINE_integer(
            "random_scale",
            _D.distortions.random_scale,
            "A percentage determining how much to randomly scale up the size of the training images "
            "by: a further zoom-in by a factor drawn from [1, 1 + S/100).",
            **own,
        )
        self.random_brightness = flags.DEFINE_integer(
            "random_brightness",
            _D.distortions.random_brightness,
            "A percentage determining how much to randomly multiply the training image input pixels "
            "up or down by: a factor drawn from [1 - B/100, 1 + B/100), not clipped.",
            **own,
        )
        self.distorted_copies = flags.DEFINE_integer(
            "distorted_copies",
            _D.distortions.distorted_copies,
            "With distortion flags: compute K distorted copies of each training image once, cache "
            "them beside the bottlenecks (named after the copy and the distortion settings) and "
            "train on those: reruns are then as fast as undistorted ones. 0: distort anew at every step.",
            **own,
        )
        module_help = (
            "Which TensorFlow Hub image module to use: a URL (tfhub.dev or kaggle.com/models), a Kaggle "
            "Models handle (owner/model/TensorFlow2/variation/version), or a local directory holding an "
            "unpacked module (TF2 SavedModel, or TF1 Hub format with an image_feature_vector signature). "
            "A classification module works too: its logits are the bottleneck. URLs are downloaded once "
            "into TFHUB_CACHE_DIR, Kaggle handles into kagglehub's cache.")
        if several_modules:
            self.tfhub_module = flags.DEFINE_multi_string(
                "tfhub_module", None, module_help + " Repeat the flag for each module to compare.", **own)
        else:
            self.tfhub_module = flags.DEFINE_string("tfhub_module", _D.tfhub_module, module_help, **own)
        self.architecture = flags.DEFINE_string(
            "architecture",
            None,
            "From the older retrain.py, still accepted: inception_v3 (the default module) or "
            "mobilenet_<1.0|0.75|0.50|0.25>_<224|192|160|128>[_quantized], mapped to the matching "
            "TF-Hub MobileNet V1 feature-vector module; the log says what it maps to. Prefer --tfhub_module.",
            **own,
        )
        self.model_dir = flags.DEFINE_string(
            "model_dir",
            None,
            "From the older retrain.py, still accepted: where downloaded modules are kept (as "
            "TFHUB_CACHE_DIR). If it holds classify_image_graph_def.pb, the 2015 Inception v3 graph "
            "the old script downloaded, that graph is used as the module.",
            **own,
        )
        self.image_size = flags.DEFINE_integer(
            "image_size",
            _D.image_size,
            "Input height and width for modules that do not fix them in their signature "
            f"(default: the module's own size, else {config_lib.FALLBACK_IMAGE_SIZE}).",
            **own,
        )


        self.allow_unsafe_ops = flags.DEFINE_boolean(
            "allow_unsafe_ops",
            _D.allow_unsafe_ops,
            "Load the module even when it holds operations that can reach outside it (files, network, "
            "processes): a module's operations are read before it is loaded, and refused unless they "
            "only compute on tensors. Only for modules you trust: TensorFlow runs them with your "
            "permissions, and this is no sandbox.",
            **own,
        )
        self.fast_jpeg_decode = flags.DEFINE_boolean(
            "fast_jpeg_decode",
            _D.fast_jpeg_decode,
            "Decode large JPEGs (phone photos) at 1/2, 1/4 or 1/8 of their size in the JPEG decoder "
            "itself (the largest that keeps both sides at least the module's input size), then "
            "resize as usual: several times less decoding work, slightly different pixels. Cache "
            "entries made this way are named apart from exact ones; the exported models record it, "
            "so label-image and the SavedModel's serving_bytes decode the same way.",
            **own,
        )

    def check(self) -> None:
        """Raises cli.UsageError, naming the flag, for values that cannot work."""
        for holder in (self.testing_percentage, self.validation_percentage):
            if not 0 <= holder.value <= 100:
                raise cli.UsageError(f"--{holder.name} must be between 0 and 100, not {holder.value}")
        if self.testing_percentage.value + self.validation_percentage.value >= 100:
            raise cli.UsageError(
                "--testing_percentage plus --validation_percentage must be below 100, leaving images for training"
            )
        if self.bottleneck_batch_size.value <= 0:
            raise cli.UsageError(f"--bottleneck_batch_size must be positive, not {self.bottleneck_batch_size.value}")
        if self.image_size.value is not None and self.image_size.value <= 0:
            raise cli.UsageError(f"--image_size must be positive, not {self.image_size.value}")
        for holder in (self.random_crop, self.random_scale, self.random_brightness):
            if holder.value < 0:
                raise cli.UsageError(f"--{holder.name} must be 0 or positive, not {holder.value}")
        if self.distorted_copies.value < 0:
            raise cli.UsageError(f"--distorted_copies must be 0 or positive, not {self.distorted_copies.value}")
        distorting = (self.flip_left_right.value or self.random_crop.value or self.random_scale.value
                      or self.random_brightness.value)
        if self.distorted_copies.value and not distorting:
            raise cli.UsageError(
                "--distorted_copies needs a distortion: --flip_left_right, --random_crop, --random_scale or --random_brightness"
            )
        if self.random_brightness.value > 100:
            raise cli.UsageError(f"--random_brightness must be at most 100, not {self.random_brightness.value}")

    def module_choices(self) -> list[legacy.LegacyChoice]:
        """With several_modules: each --tfhub_module given, with --model_dir as the download cache (logged)."""
        if self.architecture.value is not None:
            raise cli.UsageError("--architecture names one module; name each module to compare with --tfhub_module")
        handles = list(dict.fromkeys(self.tfhub_module.value or []))
        if not handles:
            raise cli.UsageError("name the modules to compare: --tfhub_module A --tfhub_module B ...")
        choices = [legacy.resolve(None, self.model_dir.value, handle) for handle in handles]
        for message in dict.fromkeys(message for choice in choices for message in choice.messages):
            logging.info("%s", message)
        return choices

    def _module(self) -> legacy.LegacyChoice:
        """--tfhub_module, or what the older --architecture and --model_dir mean (logged)."""
        given = self.tfhub_module.value if self.tfhub_module.present else None
        try:
            choice = legacy.resolve(self.architecture.value, self.model_dir.value, given)
        except ValueError as e:
            raise cli.UsageError(str(e)) from e
        for message in choice.messages:
            logging.info("%s", message)
        return choice

    def settings(self) -> dict:
        """The RetrainConfig fields these flags set, checked (see check())."""
        self.check()
        if self.several_modules:
            module = {"image_size": self.image_size.value}
        else:
            choice = self._module()
            module = dict(tfhub_module=choice.tfhub_module, image_size=self.image_size.value or choice.image_size,
                          tfhub_cache_dir=choice.tfhub_cache_dir)
        return dict(
            image_dir=self.image_dir.value,
            **module,
            bottleneck_dir=self.bottleneck_dir.value,
            bottleneck_batch_size=self.bottleneck_batch_size.value,
            fast_jpeg_decode=self.fast_jpeg_decode.value,
            allow_unsafe_ops=self.allow_unsafe_ops.value,
            split=config_lib.SplitConfig(
                testing_percentage=self.testing_percentage.value,
                validation_percentage=self.validation_percentage.value,
                exclude_list=self.exclude_list.value,
            ),
            distortions=config_lib.DistortionConfig(
                flip_left_right=self.flip_left_right.value,
                random_crop=self.random_crop.value,
                random_scale=self.random_scale.value,
                random_brightness=self.random_brightness.value,
                distorted_copies=self.distorted_copies.value,
            ),
        )
