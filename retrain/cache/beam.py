"""Fill the bottleneck cache on Apache Beam, for image sets that outgrow one machine.

The same cache ``retrain`` fills, computed by Beam workers: locally on the
DirectRunner, or on Dataflow, Flink or Spark. The driver plans as ``retrain`` would
(walk, split, cache entries, records, which are missing or stale), then the pipeline

  Create(missing entries) -> Reshuffle -> decode (DoFn) -> BatchElements
    -> module + write (DoFn: the module is loaded once per worker, in setup)

writes exactly the cache files ``retrain`` would: same names, same text, same pixels
(the same decoding functions), the same skipped files, and records beside them. A
following ``retrain`` with the same flags finds a full cache.

Workers write through the storage module, so ``--bottleneck_dir`` may be on GCS (or any
filesystem TensorFlow reads) while the workers run elsewhere.
"""

import dataclasses
import json
import logging as python_logging
import os
import secrets

import numpy as np
from absl import logging

# No TensorFlow at import: Beam workers import this module to unpickle the DoFns, and
# import TensorFlow later, in setup(), where its start-up chatter can be muted.
from retrain.cache import fill, layout, plan, records, text_format
from retrain.config import RetrainConfig
from retrain.data import image_lists, storage
from retrain.errors import ImageError, UserError
from retrain.runtime.quiet import muted_stderr

INSTALL_HINT = 'retrain-cache needs Apache Beam: pip install "retrain[beam]"'
_COUNTER_NAMESPACE = "retrain"


def import_beam():
    """The apache_beam module, imported without its start-up warnings; UserError if missing."""
    root = python_logging.getLogger()
    level = root.level
    root.setLevel(python_logging.ERROR)  # "apitools not found, and bigquery client libraries ..."
    try:
        import apache_beam as beam
    except ImportError as e:
        raise UserError(INSTALL_HINT) from e
    finally:
        root.setLevel(level)
    return beam


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One bottleneck to compute: picklable, self-contained (paths are full)."""

    image_path: str
    relative_path: str
    cache_path: str
    copy_index: int | None
    size: int
    mtime_ns: int


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
    """What a worker needs to load the module the driver planned with."""

    handle: str
    image_size: int | None
    cache_dir: str
    fingerprint: str
    cache_name: str
    height: int
    width: int
    dim: int
    fast_jpeg_decode: bool = False
    allow_unsafe_ops: bool = False


@dataclasses.dataclass
class CachePlan:
    """What the driver found: the entries and which of them the pipeline computes."""

    entries: list
    missing: list[WorkItem]
    module: ModuleSpec


@dataclasses.dataclass
class CacheFillResult:
    """What a fill did.

    Attributes:
      entries: cache entries the flags call for.
      reused: how many were current already.
      computed: how many the pipeline wrote.
      failed_images: (path, reason) for files that are not readable images.
    """

    entries: int
    reused: int
    computed: int
    failed_images: list[tuple[str, str]]


def plan_fill(config: RetrainConfig, training: plan.TrainingImages, load_extractor) -> CachePlan:
    """Walks, splits and checks the cache exactly as ``retrain`` does (the same stages and
    cache.plan); load_extractor(config) gives the module (module.hub.load_for_run)."""
    from retrain.data.preprocessing import Preprocessing

    lists = image_lists.load(config.image_dir, config.split)
    extractor = load_extractor(config)
    module = ModuleSpec(
        handle=config.tfhub_module,
        image_size=config.image_size,
        cache_dir=config.tfhub_cache_dir,
        fingerprint=extractor.fingerprint,
        cache_name=extractor.cache_name,
        height=extractor.height,
        width=extractor.width,
        dim=extractor.feature_dim,
        fast_jpeg_decode=config.fast_jpeg_decode,
        allow_unsafe_ops=config.allow_unsafe_ops,
    )
    tag = Preprocessing(module.height, module.width, config.fast_jpeg_decode).cache_tag
    groups = plan.entry_groups(lists, bottleneck_dir=config.bottleneck_dir, module_name=extractor.cache_name,
                               tag=tag, training=training)
    entries = [entry for group in groups for entry in group]
    state = fill.read_cache(
        entries, dim=module.dim, bottleneck_dir=config.bottleneck_dir, module_handle=extractor.cache_name,
        module_fingerprint=extractor.fingerprint,
    )
    state.records.save()  # Refreshed and adopted records, as retrain would save them.
    missing = []
    for i in state.missing:
        entry, image = entries[i], state.check.image_stats[i]
        missing.append(WorkItem(
            entry.image_path, entry.relative_path, entry.cache_path, entry.copy_index,
            image.size if image else -1, image.mtime_ns if image else -1,
        ))
    return CachePlan(entries, missing, module)


class DecodeImage:
    """A Beam DoFn body: WorkItem -> (WorkItem, float32 [height, width, 3] module input),
    or a 'failed' (path, reason) for a file that is not a readable image."""

    def __init__(self, module: ModuleSpec, distortion_config):
        self.module = module
        self.distortion_config = distortion_config
        self._preprocessing = None
        self._distorter = None

    def setup(self):
        with muted_stderr():
            from retrain.data import distortions
            from retrain.data.preprocessing import Preprocessing

        self._preprocessing = Preprocessing(self.module.height, self.module.width, self.module.fast_jpeg_decode)
        if self.distortion_config.enabled:
            self._distorter = distortions.Distorter(self.distortion_config, self.module.height, self.module.width)

    def decode(self, item: WorkItem) -> np.ndarray:
        """Raises ImageError; the pixels retrain's own decoding gives for this entry."""
        from retrain.data import distortions, images

        if item.copy_index is not None:
            seed = distortions.copy_seed(item.relative_path, item.copy_index)
            return self._distorter(images.read_image(item.image_path), seed)
        # retrain's tf.data path: TensorFlow's decoder, the file's EXIF orientation, and
        # Python's for what TensorFlow cannot decode.
        return self._preprocessing.decode_file(item.image_path)


class ExtractAndWrite:
    """A Beam DoFn body: a batch of (WorkItem, module input) -> cache files and records written."""

    def __init__(self, module: ModuleSpec, bottleneck_dir: str, load_module):
        """load_module: (handle, image_size, cache_dir, allow_unsafe_ops=) -> FeatureExtractor, run
        on each worker (module.hub.load_feature_extractor; pickled by reference)."""
        self.module = module
        self.bottleneck_dir = bottleneck_dir
        self.load_module = load_module
        self._extractor = None
        self._records = None

    def setup(self):
        with muted_stderr():
            extractor = self.load_module(self.module.handle, self.module.image_size, self.module.cache_dir,
                                         allow_unsafe_ops=self.module.allow_unsafe_ops)
        if extractor.fingerprint != self.module.fingerprint:
            raise RuntimeError(
                f"module {self.module.handle} on this worker is not the one the pipeline was planned with"
            )
        self._extractor = extractor

    def start_bundle(self):
        self._records = records.CacheRecords(
            self.bottleneck_dir, layout.mangle_module_name(self.module.cache_name), self.module.fingerprint
        )

    def write(self, batch: list) -> int:
        """Runs the module on the batch and writes each entry's cache file and record."""
        import tensorflow as tf

        features = self._extractor.extract(tf.constant(np.stack([pixels for _, pixels in batch]))).numpy()
        for (item, _), vector in zip(batch, features):
            text_format.write_bottleneck(item.cache_path, vector)
            digest = records.content_digest(storage.read_bytes(item.image_path))
            self._records.put(item.cache_path, records.Record(item.size, item.mtime_ns, digest))
        return len(batch)

    def finish_bundle(self):
        self._records.save()


def _pipeline_parts(beam):
    """The DoFn classes, made here because they subclass beam.DoFn (Beam is optional)."""

    class DecodeFn(beam.DoFn):
        def __init__(self, module, distortion_config):
            self.body = DecodeImage(module, distortion_config)

        def setup(self):
            self.body.setup()

        def process(self, item):
            try:
                yield item, self.body.decode(item)
            except ImageError as e:
                beam.metrics.Metrics.counter(_COUNTER_NAMESPACE, "failed").inc()
                yield beam.pvalue.TaggedOutput("failed", json.dumps([item.image_path, str(e)]))

    class ExtractAndWriteFn(beam.DoFn):
        def __init__(self, module, bottleneck_dir, load_module):
            self.body = ExtractAndWrite(module, bottleneck_dir, load_module)

        def setup(self):
            self.body.setup()

        def start_bundle(self):
            self.body.start_bundle()

        def process(self, batch):
            written = self.body.write(batch)
            beam.metrics.Metrics.counter(_COUNTER_NAMESPACE, "written").inc(written)
            yield written

        def finish_bundle(self):
            self.body.finish_bundle()

    return DecodeFn, ExtractAndWriteFn


def fill_cache(config: RetrainConfig, pipeline_args: list[str], training: plan.TrainingImages, *,
               load_extractor, load_module) -> CacheFillResult:
    """Computes the missing or stale bottlenecks of config on a Beam pipeline.

    Args:
      config: retrain's settings (image_dir, split, module, bottleneck_dir, batch size,
        distortion copies); the rest is unused.
      pipeline_args: Beam's pipeline options (--runner, --direct_num_workers, ...).
      training: what the training mode keeps of training images in the cache
        (training.modes: the mode retrain would run with these settings).
      load_extractor: config -> the module, in the driver (module.hub.load_for_run).
      load_module: (handle, image_size, cache_dir) -> the module, on each worker
        (module.hub.load_feature_extractor).

    Raises:
      UserError: Beam is missing, an option is unknown, or the input is bad.
    """
    beam = import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    if not logging.level_debug():
        # Beam logs every worker's start and stop at INFO; keep the run's own lines readable.
        python_logging.getLogger("apache_beam").setLevel(python_logging.WARNING)
        if not any(arg.startswith("--default_sdk_harness_log_level") for arg in pipeline_args):
            pipeline_args = [*pipeline_args, "--default_sdk_harness_log_level=ERROR"]
    options = PipelineOptions(pipeline_args)
    unknown = unknown_pipeline_options(pipeline_args)
    if unknown:
        raise UserError(f"Unknown flag(s) for retrain-cache or Apache Beam: {', '.join(unknown)}")
    cache_plan = plan_fill(config, training, load_extractor)
    reused = len(cache_plan.entries) - len(cache_plan.missing)
    logging.info("%d bottlenecks to compute on Beam (%d found in the cache).", len(cache_plan.missing), reused)
    if not cache_plan.missing:
        return CacheFillResult(len(cache_plan.entries), reused, 0, [])
    storage.check_writable(config.bottleneck_dir)
    failed_prefix = layout.beam_failures_prefix(config.bottleneck_dir, secrets.token_hex(6))
    decode_fn, extract_fn = _pipeline_parts(beam)
    batch = config.bottleneck_batch_size
    pipeline = beam.Pipeline(options=options)
    decoded = (
        pipeline
        | "Entries" >> beam.Create(cache_plan.missing)
        | "Spread" >> beam.Reshuffle()
        | "Decode" >> beam.ParDo(decode_fn(cache_plan.module, config.distortions)).with_outputs("failed", main="images")
    )
    _ = (
        decoded.images
        # Full batches, as retrain's: a module's kernels may round the last bit of a
        # value differently for another batch size (retrain's own resumed runs too).
        | "Batch" >> beam.BatchElements(min_batch_size=batch, max_batch_size=batch)
        | "ModuleAndWrite" >> beam.ParDo(extract_fn(cache_plan.module, config.bottleneck_dir, load_module))
    )
    _ = decoded.failed | "Failures" >> beam.io.WriteToText(failed_prefix, file_name_suffix=".jsonl")
    result = pipeline.run()
    result.wait_until_finish()
    written = _counter(result, "written")
    failed = _read_failures(storage.dirname(failed_prefix))
    records.CacheRecords(
        config.bottleneck_dir, layout.mangle_module_name(cache_plan.module.cache_name), cache_plan.module.fingerprint
    ).load().compact()
    return CacheFillResult(len(cache_plan.entries), reused, written, failed)


def unknown_pipeline_options(pipeline_args: list[str]) -> list[str]:
    """The --flags among pipeline_args that no Beam pipeline option knows (Beam only warns)."""
    import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(pipeline_args)
    known = set(options.get_all_options())
    return sorted("--" + name for name in set(options.get_all_options(retain_unknown_options=True)) - known)


def _counter(result, name: str) -> int:
    from apache_beam.metrics.metric import MetricsFilter

    counters = result.metrics().query(MetricsFilter().with_namespace(_COUNTER_NAMESPACE).with_name(name))["counters"]
    return int(sum(c.committed or c.attempted or 0 for c in counters))


def _read_failures(folder: str) -> list[tuple[str, str]]:
    """The (path, reason) lines the pipeline wrote, sorted; the folder is removed."""
    failed = []
    try:
        names = storage.listdir(folder)
    except OSError:
        return failed
    for name in names:
        for line in storage.read_text(storage.join(folder, name)).splitlines():
            if line.strip():
                path, reason = json.loads(line)
                failed.append((path, reason))
    storage.rmtree(folder)
    return sorted(failed)


def default_pipeline_args() -> list[str]:
    """With no --runner: Beam's DirectRunner on every core of this machine, in processes."""
    return ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
            f"--direct_num_workers={os.cpu_count() or 1}"]
