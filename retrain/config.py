"""Every default of the tool, in one place.

The flag definitions in the ``*_main.py`` files read their defaults from here, and
library callers get the same defaults by constructing these dataclasses.
The values are those of TensorFlow's ``retrain.py`` unless a comment says otherwise.
"""

import dataclasses

# The TF2 SavedModel of the module retrain.py used by default (it used the TF1 Hub
# format version 3 of the same network, which tensorflow_hub >= 0.16 cannot apply).
DEFAULT_TFHUB_MODULE = "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"

# Used when neither the module nor --image_size fixes the input size.
FALLBACK_IMAGE_SIZE = 299

# The split hashes file names into this many buckets; a class with more images than
# this has images that are never selected (retrain.py's MAX_NUM_IMAGES_PER_CLASS).
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1

# A class with fewer images than this gets the original's warning.
FEW_IMAGES_WARNING_THRESHOLD = 20

# Images decoded and pushed through the module per forward pass when building the cache.
# On a CPU, 16 runs Inception v3 as fast as 32 (5.30 against 5.18 images/s on 2 cores)
# with 250 MB less memory for activations.
DEFAULT_BOTTLENECK_BATCH_SIZE = 16

LOGGING_VERBOSITIES = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")

# How --output_tflite stores the model, and the types its input and output may take.
TFLITE_QUANTIZATIONS = ("float", "float16", "int8")
TFLITE_IO_TYPES = ("float32", "uint8", "int8")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How images are divided into training, validation and testing sets (percentages)."""

    testing_percentage: int = 10
    validation_percentage: int = 10
    # A file listing images to leave out of every set (one path relative to image_dir a
    # line, as retrain-doctor's exclude.txt); '' for none. The others keep their sets.
    exclude_list: str = ""


@dataclasses.dataclass(frozen=True)
class DistortionConfig:
    """Random distortions of training images; all zero / False means none."""

    flip_left_right: bool = False
    random_crop: int = 0
    random_scale: int = 0
    random_brightness: int = 0
    # > 0: train on this many distorted copies of each image, computed once and cached,
    # instead of distorting anew at every step.
    distorted_copies: int = 0

    @property
    def enabled(self) -> bool:
        return bool(
            self.flip_left_right
            or self.random_crop
            or self.random_scale
            or self.random_brightness
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The final layer's training loop."""

    how_many_training_steps: int = 4000
    learning_rate: float = 0.01
    train_batch_size: int = 100
    eval_step_interval: int = 10
    validation_batch_size: int = 100
    test_batch_size: int = -1
    random_seed: int | None = None


# How --fine_tune changes the learning rate over the epochs.
FINE_TUNE_SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """Training the module itself after the head (--fine_tune), on decoded images.

    The defaults (see the README's "Fine-tuning"): SGD with momentum 0.9 on batches of
    16, a learning rate warming up linearly over the first epoch to 6e-4 and then
    decaying to 0 along a cosine, 10 epochs, weight decay 1e-5, label smoothing 0.1.
    The best epoch on validation is kept, or the head alone when none beats it.
    """

    enabled: bool = False
    epochs: int = 10
    learning_rate: float = 6e-4
    schedule: str = "cosine"  # cosine (after one epoch of linear warm-up) | constant
    batch_size: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-5  # L2, on weight matrices and kernels (not biases or norms)
    label_smoothing: float = 0.1


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """Where artifacts go. Empty strings switch an optional artifact off."""

    output_graph: str = "/tmp/output_graph.pb"
    output_labels: str = "/tmp/output_labels.txt"
    intermediate_output_graphs_dir: str = "/tmp/intermediate_graph/"
    intermediate_store_frequency: int = 0
    summaries_dir: str = "/tmp/retrain_logs"
    checkpoint_path: str = "/tmp/_retrain_checkpoint"
    saved_model_dir: str = ""
    final_tensor_name: str = "final_result"
    # New in this version: a TFLite model of module + final layer ('' for none).
    output_tflite: str = ""
    tflite_quantization: str = "float"  # float | float16 | int8
    tflite_io_type: str = "float32"  # float32 | uint8 | int8 (int8 quantization only)
    tflite_representative_images: int = 300  # training images that calibrate int8
    # An ONNX model ('' for none), and a static web page that runs it in the browser.
    output_onnx: str = ""
    output_web: str = ""
    # onnxruntime-web's .tgz (or unpacked package) for machines without network; '' fetches it once.
    web_runtime: str = ""


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """Everything one `retrain` run needs."""

    image_dir: str = ""
    tfhub_module: str = DEFAULT_TFHUB_MODULE
    image_size: int | None = None
    # Where downloaded modules are kept ('' for TFHUB_CACHE_DIR or tensorflow_hub's default).
    tfhub_cache_dir: str = ""
    # Decode large JPEGs at 1/2, 1/4 or 1/8 scale (faster, slightly different pixels).
    fast_jpeg_decode: bool = False
    bottleneck_dir: str = "/tmp/bottleneck"
    bottleneck_batch_size: int = DEFAULT_BOTTLENECK_BATCH_SIZE
    print_misclassified_test_images: bool = False
    # The calibrated top score below which the model answers "unknown"; None chooses
    # it on validation ("auto") to reach unknown_target_precision.
    unknown_threshold: float | None = None
    unknown_target_precision: float = 0.95
    # An HTML evaluation report of the test set, with pictures ('' for none).
    report_dir: str = ""
    # Load a module even when it holds operations outside the allowlist (module.scan).
    allow_unsafe_ops: bool = False
    split: SplitConfig = SplitConfig()
    distortions: DistortionConfig = DistortionConfig()
    train: TrainConfig = TrainConfig()
    fine_tune: FineTuneConfig = FineTuneConfig()
    output: OutputConfig = OutputConfig()


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Everything one `retrain-compare` run needs: each module trained as `retrain` would
    with run (its images, split, cache, training), on the same split and seed.

    run's tfhub_module and outputs are not used: each module's graph, labels, checkpoint
    and TensorBoard logs go under output_dir.
    """

    modules: tuple[str, ...] = ()
    run: RetrainConfig = RetrainConfig()
    output_dir: str = "/tmp/retrain_compare"
    # Images per run when measuring the exported graph's throughput.
    latency_batch_size: int = 32


@dataclasses.dataclass(frozen=True)
class DoctorConfig:
    """Everything one `retrain-doctor` run needs: run's images, split, module and cache (its
    training and outputs are not used)."""

    run: RetrainConfig = RetrainConfig()
    output_dir: str = "/tmp/retrain_doctor"
    # Out-of-fold heads for the label issues.
    folds: int = 5
    # Seeds the folds and every random choice: the same folder gives the same findings.
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class LabelImageConfig:
    """Everything one `label-image` run needs (defaults: label_image.py's, for retrained graphs).

    input_height / input_width None: the graph's fixed input size, else 299.
    min_accuracy None: no gate.
    """

    graph: str = ""
    labels: str = ""
    images: tuple[str, ...] = ()
    image_dir: str = ""
    evaluate: bool = False
    min_accuracy: float | None = None
    input_height: int | None = None
    input_width: int | None = None
    input_layer: str = "Placeholder"
    output_layer: str = "final_result"
    input_mean: float = 0.0
    input_std: float = 255.0
    top_k: int = 5
    batch_size: int = 32
    output_format: str = "text"
    # A SavedModel's signature: serving_default (pixels) or serving_bytes (file bytes).
    signature: str = "serving_default"
    # Answer "unknown" below the model's threshold (or unknown_threshold, when given).
    unknown: bool = False
    unknown_threshold: float | None = None
    # With evaluate: also write an HTML report with pictures here ('' for none).
    report_dir: str = ""
    # Run a model even when it holds operations outside the allowlist (module.scan).
    allow_unsafe_ops: bool = False
    # With evaluate: a file listing images of image_dir to leave out (as SplitConfig's).
    exclude_list: str = ""
