"""Measures where retrain spends its time and memory, offline, on this machine.

  python scripts/benchmark.py [--sections core,phone,...] [--images 200] [--repeats 5]
                              [--module DIR] [--quick] [--json out.json] [--workdir DIR]

Builds (unless --module names a real one) a feature-vector module with the real
Inception v3 architecture and random weights (same compute as tfhub.dev's), and
synthetic images, then runs the sections asked for (default: all):

  core         the module alone per batch size; cold extraction into an empty cache,
               --repeats times, each against the module's rate measured just before and
               after (median and spread of the ratio); memory growth while extracting;
               reloading the full cache; 4,000 training steps; one live-distortion step;
               label-image over the folder against its graph's own forward rate
  warm         reloading 4,000 and 40,000 cached bottlenecks of 2,048 values (generated)
  phone        12-megapixel phone photos (4000x3000, ~4.5 MB): extraction with exact
               and with --fast_jpeg_decode decoding, against the module alone
  decode       ordinary JPEGs: decode-and-resize throughput on all cores (no module);
               cold extraction with a near-free module against it, also into a cache
               that cannot be written (what writing the cache costs); and with an
               EfficientNet-Lite0-sized module (EfficientNetB0, 0.4 GFLOPs) against
               that module alone
  e2e          the `retrain` command as a user runs it, cold and warm (wall time, peak
               RSS), beside TensorFlow's import and the module's load; a cold run on the
               phone photos (peak RSS); the cold start-up of extraction in a fresh
               process: when the first batch is decoded, and what the first batch costs
               beyond its share of the steady rate
  label_image  `label-image` on one image: wall time and peak RSS, beside TensorFlow's
               import and the graph's load
  exports      per deployable format (frozen graph, SavedModel, TFLite float, float16,
               int8, ONNX with the onnx extra): file size, conversion time, label-image
               folder throughput
  beam         retrain-cache on Beam's DirectRunner with 2 workers, against the
               in-process extraction of the same images
  fine_tune    --fine_tune on an EfficientNet-Lite0-sized module that can be trained:
               training images/s (decoded, forward and backward, batch 16) beside cold
               extraction (decoded, forward only) on the same module; peak RSS of a
               `retrain --fine_tune` run on 300 and on 3,000 images (a tiny module,
               so decoding sets the pace): memory must not grow with the images
  doctor       `retrain-doctor` on 3,000 JPEGs (300-640 px) with a 1,280-value module,
               cold and with a warm cache (wall time, peak RSS); then its checks alone
               (label issues, duplicates, outliers) on generated features of 10,000 and
               --doctor_scale images (time, peak RSS): memory must grow linearly, no n x n
"""

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SECTIONS = ("core", "warm", "phone", "decode", "e2e", "label_image", "exports", "beam", "fine_tune", "doctor")


def _forward_rate(extract, height, width, batch_size, seconds):
    """Images/s of extract on pre-decoded float32 batches, after one warm-up call.

    Cycles through four distinct batches, as decoded images would arrive, rather
    than feeding one cache-hot array again and again.
    """
    rng = np.random.default_rng(0)
    batches = [rng.random((batch_size, height, width, 3), np.float32) for _ in range(4)]
    extract(batches[0])
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        np.asarray(extract(batches[count // batch_size % len(batches)]))
        count += batch_size
    return count / (time.perf_counter() - start)


def _current_rss_mib() -> float:
    """Resident memory now (Linux /proc), in MiB; 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


class _PeakRss:
    """Samples resident memory on a thread while in use; .growth_mib is peak minus start."""

    def __enter__(self):
        import threading

        self.start = self.peak = _current_rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _current_rss_mib())

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self.growth_mib = max(self.peak, _current_rss_mib()) - self.start


def _spread(values) -> dict:
    """Median, minimum and maximum of a list of numbers."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {"median": median, "min": ordered[0], "max": ordered[-1], "all": list(values)}


def _fmt(spread, digits=2, unit=""):
    return f"{spread['median']:.{digits}f}{unit} (runs: {spread['min']:.{digits}f}-{spread['max']:.{digits}f})"


def _tool(name):
    return os.path.join(os.path.dirname(sys.executable), name)


# Runs a command and writes its peak RSS (KiB) to argv[1]. The command is started from this
# small launcher, not from the benchmark itself: a child's peak RSS counts what it inherited at
# fork, and the benchmark holds gigabytes by then.
_PEAK_RSS_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def _run_measured(command, env=None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, stderr) of a command run to completion; fails loudly."""
    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as peak:
        start = time.perf_counter()
        process = subprocess.run([sys.executable, "-c", _PEAK_RSS_LAUNCHER, peak.name, *command],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{process.stderr[-3000:]}")
        return elapsed, int(peak.read()) / 1024, process.stderr


# TensorFlow imported as the tools import it (cli.import_tensorflow_quietly: without the
# matplotlib.pyplot that Keras pulls in when matplotlib is installed, about a second).
_TOOLS_IMPORT = "from retrain.commands import cli; cli.import_tensorflow_quietly(verbose=True)\nimport tensorflow as tf\n"
# As label-image imports it for a frozen graph or TFLite file: without Keras too.
_TOOLS_IMPORT_WITHOUT_KERAS = _TOOLS_IMPORT.replace("verbose=True", "verbose=True, without_keras=True")


def _python_seconds(code: str) -> float:
    """Wall seconds of `python -c code` (TensorFlow's own start-up, measured the same way)."""
    return _run_measured([sys.executable, "-c", code], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})[0]


# Run in a fresh process: a cold extraction of 24 images per class (96 of the generated set),
# timing each call of the module.
_STARTUP_PROBE = """
import json, shutil, sys, time
from retrain.commands import cli
cli.quiet_tensorflow(); cli.import_tensorflow_quietly(verbose=False)
import tensorflow as tf
from retrain.cache import fill
from retrain.module import hub
from retrain.data import image_lists, module_inputs
from retrain.data.preprocessing import Preprocessing
module, image_dir, cache_dir, out = sys.argv[1:5]
extractor = hub.load_feature_extractor(module)
extractor.extract  # Loaded here: a first run loads it before extracting too.
lists = image_lists.create_image_lists(image_dir, 10, 10)
for sets in lists.values():
    sets.update(training=sets["training"][:24], testing=[], validation=[])
shutil.rmtree(cache_dir, ignore_errors=True)
calls = []
def extract(batch):
    start = time.perf_counter()
    features = extractor.extract(tf.convert_to_tensor(batch)).numpy()
    calls.append((start, time.perf_counter(), len(features)))
    return features
begin = time.perf_counter()
fill.load_or_compute(image_lists=lists, bottleneck_dir=cache_dir, module_handle=extractor.cache_name,
    module_fingerprint=extractor.fingerprint, dim=extractor.feature_dim, extract=extract,
    decode=module_inputs.module_input_decoder(Preprocessing(extractor.height, extractor.width), 32))
steady = min((end - start) / n for start, end, n in calls[1:]) * calls[0][2]
with open(out, "w") as f:
    json.dump({"first_batch_s": calls[0][0] - begin, "first_call_extra_s": calls[0][1] - calls[0][0] - steady,
               "startup_lost_s": calls[0][1] - begin - steady}, f)
"""


def _startup_probe(bench) -> dict:
    """Seconds of a cold extraction's start-up in a fresh process (see _STARTUP_PROBE)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        _run_measured([sys.executable, "-c", _STARTUP_PROBE, bench.inception, bench.image_dir,
                       os.path.join(bench.workdir, "startup_cache"), out.name])
        return json.load(out)


class Bench:
    """The shared state of a benchmark run: work folder, modules, images, figures."""

    def __init__(self, args):
        self.args = args
        self.workdir = args.workdir or tempfile.mkdtemp(prefix="retrain-benchmark-")
        self.seconds = 3.0 if args.quick else 6.0
        self.figures: dict = {}
        self.rows: list[tuple[str, str]] = []

    def log(self, text):
        print(text, file=sys.stderr, flush=True)

    def row(self, name, value):
        self.rows.append((name, value))
        self.log(f"{name}: {value}")

    def module(self, name, build):
        path = os.path.join(self.workdir, name)
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            self.log(f"Building module {name}...")
            build(path)
        return path

    @property
    def inception(self):
        from retrain import testing

        return self.args.module or self.module("inception_v3_random", testing.build_inception_v3_module)

    @property
    def image_dir(self):
        from retrain import testing

        path = os.path.join(self.workdir, "images")
        if not os.path.isdir(path):
            self.log(f"Writing {self.args.images} JPEGs...")
            testing.make_image_folder(path, class_names=("a", "b", "c", "d"),
                                      images_per_class=self.args.images // 4, min_size=300, max_size=640)
        return path

    @property
    def phone_dir(self):
        from retrain import testing

        path = os.path.join(self.workdir, "phone_photos")
        if not os.path.isdir(path):
            self.log(f"Writing {self.args.phone_photos} phone photos...")
            testing.make_phone_photos(path, per_class=self.args.phone_photos // 2)
        return path


def _extraction(image_dir, extractor, cache_dir, preprocessing, batch_size, lists=None):
    """(images/s, peak RSS growth MiB, Bottlenecks) of filling an empty cache in-process."""
    import tensorflow as tf

    from retrain.cache import fill
    from retrain.data import image_lists, module_inputs

    lists = lists or image_lists.create_image_lists(image_dir, 10, 10)
    shutil.rmtree(cache_dir, ignore_errors=True)
    with _PeakRss() as memory:
        start = time.perf_counter()
        result = fill.load_or_compute(
            image_lists=lists, bottleneck_dir=cache_dir, module_handle=extractor.cache_name,
            module_fingerprint=extractor.fingerprint, dim=extractor.feature_dim,
            decode=module_inputs.module_input_decoder(preprocessing, batch_size),
            extract=lambda batch: extractor.extract(tf.convert_to_tensor(batch)).numpy(),
            tag=preprocessing.cache_tag,
        )
        elapsed = time.perf_counter() - start
    return result.computed / elapsed, memory.growth_mib, result


def _decode_only_rate(paths, preprocessing, batch_size=32, repeats=1):
    """Images/s of reading, decoding and resizing paths on all cores, nothing else."""
    from retrain.data import module_inputs

    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = 0
        for positions, _, _ in module_inputs.module_input_batches(paths, preprocessing=preprocessing,
                                                                  batch_size=batch_size):
            count += len(positions)
        rates.append(count / (time.perf_counter() - start))
    return rates


@contextlib.contextmanager
def _absl_quiet():
    from absl import logging

    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _all_paths(image_dir):
    from retrain import inference

    return inference.find_images([image_dir])[0]


def section_core(bench: Bench):
    import tensorflow as tf

    from retrain import inference
    from retrain.config import DistortionConfig, TrainConfig
    from retrain.data import distortions, image_lists
    from retrain.data.preprocessing import Preprocessing
    from retrain.exports import frozen_graph
    from retrain.model import TrainedModel
    from retrain.module import hub
    from retrain.module.frozen import FrozenModule
    from retrain.training import live_distortions, trainer

    args, f = bench.args, bench.figures
    extractor = hub.load_feature_extractor(bench.inception)
    height, width = extractor.height, extractor.width
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    by_batch = {size: [] for size in sizes}
    for _ in range(1 if args.quick else 2):  # Interleaved, so a slow minute does not pick the batch.
        for size in sizes:
            by_batch[size].append(_forward_rate(extractor.extract, height, width, size, bench.seconds))
    rates = {size: float(np.mean(values)) for size, values in by_batch.items()}
    best = max(rates, key=rates.get)
    f["forward_by_batch"] = rates
    bench.row("module alone by batch", ", ".join(f"{b}: {r:.2f}/s" for b, r in rates.items()))

    lists = image_lists.create_image_lists(bench.image_dir, 10, 10)
    count = sum(len(v[c]) for v in lists.values() for c in image_lists.CATEGORIES)
    cache_dir = os.path.join(bench.workdir, "cache")
    preprocessing = Preprocessing(height, width)
    half = image_lists.ImageLists(lists.root, {
        label: {**sets, **{c: sets[c][: len(sets[c]) // 2] for c in image_lists.CATEGORIES}}
        for label, sets in lists.items()
    })
    f["cold_rss_growth_half_mib"] = _extraction(None, extractor, cache_dir, preprocessing, args.bottleneck_batch_size,
                                                lists=half)[1]
    forward = [_forward_rate(extractor.extract, height, width, best, bench.seconds)]
    cold, ratios, growth = [], [], []
    for repeat in range(args.repeats):
        rate, growth_mib, cache = _extraction(None, extractor, cache_dir, preprocessing, args.bottleneck_batch_size,
                                              lists=lists)
        forward.append(_forward_rate(extractor.extract, height, width, best, bench.seconds))
        cold.append(rate)
        growth.append(growth_mib)
        ratios.append(rate / ((forward[-2] + forward[-1]) / 2))
        bench.log(f"cold extraction {repeat + 1}: {rate:.2f} images/s, {ratios[-1]:.3f} of the module alone")
    f.update(forward_images_per_s=_spread(forward), cold_images_per_s=_spread(cold),
             cold_ratio_to_forward=_spread(ratios), cold_rss_growth_mib=max(growth))
    bench.row(f"module alone (batch {best})", _fmt(f["forward_images_per_s"], unit=" images/s"))
    bench.row("cold extraction", _fmt(f["cold_images_per_s"], unit=" images/s"))
    bench.row("cold / module alone", _fmt(f["cold_ratio_to_forward"], 3))
    bench.row("RSS growth while extracting",
              f"{f['cold_rss_growth_mib']:.0f} MiB (half the images: {f['cold_rss_growth_half_mib']:.0f} MiB)")

    from retrain.cache import fill
    from retrain.data import module_inputs

    start = time.perf_counter()
    warm = fill.load_or_compute(
        image_lists=lists, bottleneck_dir=cache_dir, module_handle=extractor.cache_name,
        module_fingerprint=extractor.fingerprint, dim=extractor.feature_dim,
        decode=module_inputs.module_input_decoder(preprocessing, 32),
        extract=lambda batch: (_ for _ in ()).throw(AssertionError("a warm cache needs no forward pass")),
    )
    f["warm_reload_s"] = time.perf_counter() - start
    bench.row("warm reload", f"{f['warm_reload_s']:.3f} s for {count} bottlenecks, {warm.computed} computed")

    config = TrainConfig(how_many_training_steps=args.steps)
    start = time.perf_counter()
    result = trainer.train(examples=cache.sets["training"], validation=cache.sets["validation"],
                           testing=cache.sets["testing"], class_count=4, train_config=config, seed=0)
    f["training_s"] = time.perf_counter() - start
    bench.row(f"training {args.steps} steps", f"{f['training_s']:.2f} s")

    training_paths = cache.sets["training"].image_paths
    kept, positions, _ = live_distortions.decode_training_images(
        training_paths, budget_bytes=live_distortions.memory_budget_bytes(), workers=os.cpu_count() or 1)
    examples = live_distortions.DistortedExamples(
        images=kept, labels=cache.sets["training"].labels[positions],
        distorter=distortions.Distorter(DistortionConfig(flip_left_right=True, random_crop=10, random_scale=10,
                                                         random_brightness=10), height, width),
        extract=lambda batch: extractor.extract(tf.convert_to_tensor(batch)).numpy(), dim=extractor.feature_dim,
        seed=0, workers=os.cpu_count() or 1)
    draw = np.random.default_rng(0)
    examples.bottlenecks(draw.integers(len(kept), size=100))
    steps = 1 if args.quick else 3
    start = time.perf_counter()
    for _ in range(steps):
        examples.bottlenecks(draw.integers(len(kept), size=100))
    f["distorted_step_s"] = (time.perf_counter() - start) / steps
    bench.row("live-distorted training step", f"{f['distorted_step_s']:.2f} s "
              f"(undistorted: {f['training_s'] / args.steps * 1000:.2f} ms)")

    frozen = FrozenModule(extractor)
    model = TrainedModel(frozen, preprocessing, ["a", "b", "c", "d"], result.weights, result.biases)
    graph_path = os.path.join(bench.workdir, "graph.pb")
    frozen_graph.write(graph_path, model)
    classifier = inference.load_classifier(graph_path)
    paths = _all_paths(bench.image_dir)
    list(inference.classify_files(classifier, paths[:32], mean=0, std=255, batch_size=32))
    start = time.perf_counter()
    for _ in inference.classify_files(classifier, paths, mean=0, std=255, batch_size=32):
        pass
    rate = len(paths) / (time.perf_counter() - start)
    graph_forward = _forward_rate(classifier.scores, height, width, 32, bench.seconds)
    f.update(label_image_images_per_s=rate, label_image_ratio_to_forward=rate / graph_forward)
    bench.row("label-image over the folder", f"{rate:.2f} images/s ({rate / graph_forward:.3f} of its forward)")


def _generated_cache(workdir, count, dim):
    """Writes (once) count cached bottlenecks of dim values with stand-in images; (ImageLists, cache dir)."""
    from retrain.cache import layout, text_format
    from retrain.data import image_lists

    root = os.path.join(workdir, f"warm_{count}")
    image_dir, cache_dir = os.path.join(root, "images"), os.path.join(root, "cache")
    lists = image_lists.ImageLists(image_dir)
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        names = [f"{cls}{i:06d}.jpg" for i in range(count // 2)]
        lists[cls] = {"dir": cls, "training": names, "testing": [], "validation": []}
        os.makedirs(os.path.join(image_dir, cls), exist_ok=True)
        for name in names:
            path = os.path.join(image_dir, cls, name)
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(rng.bytes(2000))
            cache = layout.bottleneck_path(cache_dir, cls, name, "m")
            if not os.path.exists(cache):
                text_format.write_bottleneck(cache, rng.random(dim).astype(np.float32))
    return lists, cache_dir


def _reload_seconds(lists, cache_dir, dim):
    from retrain.cache import fill
    from retrain.data import batching

    def no_forward(batch):
        raise AssertionError("a warm cache needs no forward pass")

    start = time.perf_counter()
    result = fill.load_or_compute(image_lists=lists, bottleneck_dir=cache_dir, module_handle="m", dim=dim,
                                         decode=batching.threaded_decoder(lambda p: None, 32), extract=no_forward)
    elapsed = time.perf_counter() - start
    assert result.reused == sum(len(v["training"]) for v in lists.values())
    return elapsed


def section_warm(bench: Bench):
    for count in (4000, 40000):
        lists, cache_dir = _generated_cache(bench.workdir, count, 2048)
        _reload_seconds(lists, cache_dir, 2048)  # Records adopted on the first reload after writing.
        times = [_reload_seconds(lists, cache_dir, 2048) for _ in range(1 if bench.args.quick else 3)]
        bench.figures[f"warm_reload_{count}_s"] = _spread(times)
        bench.row(f"warm reload of {count:,} bottlenecks", _fmt(bench.figures[f"warm_reload_{count}_s"], 3, " s"))


def section_phone(bench: Bench):
    from retrain.data.preprocessing import Preprocessing
    from retrain.module import hub

    f = bench.figures
    extractor = hub.load_feature_extractor(bench.inception)
    paths = _all_paths(bench.phone_dir)
    cache_dir = os.path.join(bench.workdir, "phone_cache")
    results = {"exact": [], "fast": []}
    forward = [_forward_rate(extractor.extract, extractor.height, extractor.width, 32, bench.seconds)]
    for _ in range(1 if bench.args.quick else 2):
        for name, fast in (("exact", False), ("fast", True)):
            preprocessing = Preprocessing(extractor.height, extractor.width, fast_jpeg_decode=fast)
            rate, growth, _ = _extraction(bench.phone_dir, extractor, cache_dir, preprocessing, 32)
            forward.append(_forward_rate(extractor.extract, extractor.height, extractor.width, 32, bench.seconds))
            results[name].append(rate / ((forward[-2] + forward[-1]) / 2))
            bench.log(f"phone photos, {name} decoding: {rate:.2f} images/s, {results[name][-1]:.3f} of the module")
    for name in ("exact", "fast"):
        preprocessing = Preprocessing(extractor.height, extractor.width, fast_jpeg_decode=name == "fast")
        decode = _decode_only_rate(paths, preprocessing)
        f[f"phone_{name}_ratio"] = _spread(results[name])
        f[f"phone_{name}_decode_only_images_per_s"] = decode[0]
        bench.row(f"phone photos, {name} decoding / module alone",
                  f"{_fmt(f[f'phone_{name}_ratio'], 3)}; decoding alone {decode[0]:.1f} images/s")
    f["phone_forward_images_per_s"] = _spread(forward)
    bench.row("module alone during the phone runs", _fmt(f["phone_forward_images_per_s"], unit=" images/s"))


def section_decode(bench: Bench):
    from retrain import testing
    from retrain.data.preprocessing import Preprocessing
    from retrain.module import hub

    f = bench.figures
    paths = _all_paths(bench.image_dir)
    near_free = hub.load_feature_extractor(bench.module("near_free_grid", testing.build_near_free_module))
    preprocessing = Preprocessing(near_free.height, near_free.width)
    cache_dir = os.path.join(bench.workdir, "decode_cache")
    _decode_only_rate(paths, preprocessing)  # Not counted: the first pass reads the files into the page cache.
    _forward_rate(near_free.extract, near_free.height, near_free.width, 32, 0.5)  # Its first call is start-up.
    # Alternated, each extraction against the decoding measured just before and after it: the machine drifts.
    # The same extraction into a cache that cannot be written (a folder under a file): what
    # writing retrain.py's cache (a text file per image, its record) costs on top.
    unwritable = os.path.join(bench.workdir, "a_file", "cache")
    open(os.path.dirname(unwritable), "w").close()
    decode, extraction, unsaved = _decode_only_rate(paths, preprocessing), [], []
    for _ in range(bench.args.repeats):
        extraction.append(_extraction(bench.image_dir, near_free, cache_dir, preprocessing, 32)[0])
        decode += _decode_only_rate(paths, preprocessing)
        with _absl_quiet():  # It warns, once a run, that the cache cannot be written.
            unsaved.append(_extraction(bench.image_dir, near_free, unwritable, preprocessing, 32)[0])
        decode += _decode_only_rate(paths, preprocessing)

    def ratios(rates, first):  # Each against the decoding measured just before and after it.
        return [rate / ((decode[i] + decode[i + 1]) / 2) for rate, i in zip(rates, range(first, len(decode), 2))]

    f.update(decode_only_images_per_s=_spread(decode), near_free_images_per_s=_spread(extraction),
             near_free_ratio=_spread(ratios(extraction, 0)), near_free_unsaved_ratio=_spread(ratios(unsaved, 1)))
    bench.row(f"decode and resize only ({os.cpu_count()} cores)", _fmt(f["decode_only_images_per_s"], 1, " images/s"))
    bench.row("cold extraction, near-free module", _fmt(f["near_free_images_per_s"], 1, " images/s"))
    bench.row("  / decode only", _fmt(f["near_free_ratio"], 3))
    bench.row("  same, cache not written / decode only", _fmt(f["near_free_unsaved_ratio"], 3))

    cheap = hub.load_feature_extractor(
        bench.module("efficientnet_b0", lambda p: testing.build_keras_module(p, "EfficientNetB0", 224)))
    preprocessing = Preprocessing(cheap.height, cheap.width)
    forward = [_forward_rate(cheap.extract, 224, 224, 32, bench.seconds)]
    ratios = []
    for _ in range(bench.args.repeats):
        rate = _extraction(bench.image_dir, cheap, cache_dir, preprocessing, 32)[0]
        forward.append(_forward_rate(cheap.extract, 224, 224, 32, bench.seconds))
        ratios.append(rate / ((forward[-2] + forward[-1]) / 2))
    f.update(efficientnet_forward_images_per_s=_spread(forward), efficientnet_ratio=_spread(ratios))
    bench.row("EfficientNet-B0-sized module alone", _fmt(f["efficientnet_forward_images_per_s"], 1, " images/s"))
    bench.row("  cold extraction / module alone", _fmt(f["efficientnet_ratio"], 3))


def _retrain_command(bench, image_dir, cache_dir, out, extra=()):
    return [_tool("retrain"), f"--image_dir={image_dir}", f"--tfhub_module={bench.inception}",
            f"--bottleneck_dir={cache_dir}", f"--output_graph={out}/output_graph.pb",
            f"--output_labels={out}/output_labels.txt", f"--summaries_dir={out}/logs",
            f"--checkpoint_path={out}/checkpoint", "--random_seed=1", *extra]


def section_e2e(bench: Bench):
    f = bench.figures
    repeats = 1 if bench.args.quick else 3
    f["tensorflow_import_s"] = _spread([_python_seconds(_TOOLS_IMPORT) for _ in range(repeats)])
    load = _TOOLS_IMPORT + f"from retrain.module import hub; hub.load_feature_extractor({bench.inception!r})"
    f["tensorflow_import_and_module_load_s"] = _spread([_python_seconds(load) for _ in range(repeats)])
    bench.row("TensorFlow import (as the tools import it)", _fmt(f["tensorflow_import_s"], 1, " s"))
    bench.row("  + module load", _fmt(f["tensorflow_import_and_module_load_s"], 1, " s"))
    out = os.path.join(bench.workdir, "e2e")
    cache_dir = os.path.join(out, "cache")
    shutil.rmtree(out, ignore_errors=True)
    cold = _run_measured(_retrain_command(bench, bench.image_dir, cache_dir, out))
    warm = [_run_measured(_retrain_command(bench, bench.image_dir, cache_dir, out)) for _ in range(repeats)]
    f.update(e2e_cold_s=cold[0], e2e_cold_peak_rss_mib=cold[1], e2e_warm_s=_spread([w[0] for w in warm]),
             e2e_warm_peak_rss_mib=max(w[1] for w in warm))
    bench.row(f"retrain, cold ({bench.args.images} images)", f"{cold[0]:.1f} s, peak RSS {cold[1]:.0f} MiB")
    bench.row("retrain, warm", f"{_fmt(f['e2e_warm_s'], 1, ' s')}, peak RSS {f['e2e_warm_peak_rss_mib']:.0f} MiB")
    # A warm run does not load the module (its sizes are recorded in the cache): the
    # issue's target counts from import + load, what remains is measured from import.
    bench.row("  warm minus TF import and module load",
              f"{f['e2e_warm_s']['median'] - f['tensorflow_import_and_module_load_s']['median']:.1f} s")
    bench.row("  warm minus TF import",
              f"{f['e2e_warm_s']['median'] - f['tensorflow_import_s']['median']:.1f} s")
    phone_out = os.path.join(bench.workdir, "e2e_phone")
    shutil.rmtree(phone_out, ignore_errors=True)
    phone = _run_measured(_retrain_command(bench, bench.phone_dir, os.path.join(phone_out, "cache"), phone_out,
                                           ["--how_many_training_steps=100"]))
    f.update(e2e_phone_cold_s=phone[0], e2e_phone_peak_rss_mib=phone[1])
    bench.row(f"retrain, cold, {bench.args.phone_photos} phone photos", f"{phone[0]:.1f} s, peak RSS {phone[1]:.0f} MiB")

    probes = [_startup_probe(bench) for _ in range(1 if bench.args.quick else 3)]
    for key in ("first_batch_s", "first_call_extra_s", "startup_lost_s"):
        f[f"cold_{key}"] = _spread([probe[key] for probe in probes])
    bench.row("cold start-up: first batch decoded", _fmt(f["cold_first_batch_s"], 2, " s"))
    bench.row("  the module's first call beyond the steady rate", _fmt(f["cold_first_call_extra_s"], 2, " s"))
    bench.row("  start-up lost in all (first batch's features late by)", _fmt(f["cold_startup_lost_s"], 2, " s"))


def section_label_image(bench: Bench):
    f = bench.figures
    out = os.path.join(bench.workdir, "e2e")
    graph = os.path.join(out, "output_graph.pb")
    if not os.path.exists(graph):
        _run_measured(_retrain_command(bench, bench.image_dir, os.path.join(out, "cache"), out,
                                       ["--how_many_training_steps=10"]))
    image = _all_paths(bench.image_dir)[0]
    repeats = 1 if bench.args.quick else 3
    runs = [_run_measured([_tool("label-image"), f"--graph={graph}", f"--labels={out}/output_labels.txt",
                           f"--image={image}"]) for _ in range(repeats)]
    graph_load = (f"g = tf.compat.v1.GraphDef(); g.ParseFromString(open({graph!r}, 'rb').read())\n"
                  "with tf.Graph().as_default(): tf.compat.v1.import_graph_def(g, name='')")
    baseline = [_python_seconds(_TOOLS_IMPORT + graph_load) for _ in range(repeats)]
    baseline_without_keras = [_python_seconds(_TOOLS_IMPORT_WITHOUT_KERAS + graph_load) for _ in range(repeats)]
    f.update(label_image_one_s=_spread([r[0] for r in runs]), label_image_one_peak_rss_mib=max(r[1] for r in runs),
             label_image_one_peak_rss_all_mib=[r[1] for r in runs],
             tensorflow_import_and_graph_load_s=_spread(baseline),
             tensorflow_import_without_keras_and_graph_load_s=_spread(baseline_without_keras))
    bench.row("label-image, one image", f"{_fmt(f['label_image_one_s'], 2, ' s')}, "
              f"peak RSS {f['label_image_one_peak_rss_mib']:.0f} MiB")
    bench.row("  TensorFlow import + graph load", _fmt(f["tensorflow_import_and_graph_load_s"], 2, " s"))
    bench.row("  the same, TensorFlow without Keras", _fmt(f["tensorflow_import_without_keras_and_graph_load_s"], 2, " s"))
    # The safety scan of that graph (every node and function read before anything runs), beside its parsing.
    import tensorflow as tf

    from retrain.module import scan

    contents = open(graph, "rb").read()
    parse, check = [], []
    for _ in range(repeats * 3):
        start = time.perf_counter()
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(contents)
        parse.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert not scan.graph_findings(graph_def)
        check.append(time.perf_counter() - start)
    f.update(scan_graph_mb=len(contents) / 1e6, scan_graph_parse_s=_spread(parse), scan_graph_s=_spread(check))
    bench.row(f"safety scan of the graph ({len(contents) / 1e6:.0f} MB)", f"{_fmt(f['scan_graph_s'], 3, ' s')} "
              f"beside parsing it {_fmt(f['scan_graph_parse_s'], 3, ' s')}")


def section_exports(bench: Bench):
    from retrain import inference
    from retrain.data import image_lists
    from retrain.data.preprocessing import Preprocessing
    from retrain.exports import frozen_graph, saved_model, tflite
    from retrain.model import TrainedModel
    from retrain.module import hub
    from retrain.module.frozen import FrozenModule

    f = bench.figures
    extractor = hub.load_feature_extractor(bench.inception)
    preprocessing = Preprocessing(extractor.height, extractor.width)
    lists = image_lists.create_image_lists(bench.image_dir, 10, 10)
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(extractor.feature_dim, 4)).astype(np.float32) * 0.01
    training = [lists.image_path(l, n) for l in lists for n in lists[l]["training"]]
    model = TrainedModel(FrozenModule(extractor), preprocessing, ["a", "b", "c", "d"],
                         weights, np.zeros(4, np.float32), representative_paths=tuple(training))
    paths = _all_paths(bench.image_dir)[:64]
    folder = os.path.join(bench.workdir, "exports")
    os.makedirs(folder, exist_ok=True)
    labels = os.path.join(folder, "labels.txt")
    with open(labels, "w") as out:
        out.write("a\nb\nc\nd\n")
    formats = {}
    start = time.perf_counter()
    frozen_graph.write(os.path.join(folder, "graph.pb"), model)
    formats["frozen graph"] = (os.path.join(folder, "graph.pb"), time.perf_counter() - start)
    start = time.perf_counter()
    saved_model.write(os.path.join(folder, "saved_model"), model)
    formats["SavedModel"] = (os.path.join(folder, "saved_model"), time.perf_counter() - start)
    for quantization in ("float", "float16", "int8"):
        path = os.path.join(folder, f"model_{quantization}.tflite")
        start = time.perf_counter()
        content = tflite.convert(model, quantization=quantization, representative_images=100)
        formats[f"TFLite {quantization}"] = (path, time.perf_counter() - start)
        with open(path, "wb") as out:
            out.write(content)
    try:
        from retrain.exports import onnx

        onnx.check_available()
    except Exception:  # The onnx extra is not installed: its row is left out.
        onnx = None
    if onnx is not None:
        path = os.path.join(folder, "model.onnx")
        start = time.perf_counter()
        content = onnx.convert(model)
        formats["ONNX"] = (path, time.perf_counter() - start)
        with open(path, "wb") as out:
            out.write(content)
    for name, (path, seconds) in formats.items():
        size = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(path) for n in ns) \
            if os.path.isdir(path) else os.path.getsize(path)
        classifier = inference.load_classifier(path)
        list(inference.classify_files(classifier, paths[:8], mean=0, std=255, batch_size=32))
        start = time.perf_counter()
        for _ in inference.classify_files(classifier, paths, mean=0, std=255, batch_size=32):
            pass
        rate = len(paths) / (time.perf_counter() - start)
        f[f"export_{name}"] = {"bytes": size, "seconds": seconds, "label_image_images_per_s": rate}
        bench.row(f"{name}", f"{size / 1e6:.1f} MB, written in {seconds:.1f} s, label-image {rate:.1f} images/s")


def section_beam(bench: Bench):
    from retrain.data.preprocessing import Preprocessing
    from retrain.module import hub

    f = bench.figures
    extractor = hub.load_feature_extractor(bench.inception)
    count = len(_all_paths(bench.image_dir))
    in_process = _extraction(bench.image_dir, extractor, os.path.join(bench.workdir, "beam_own"),
                             Preprocessing(extractor.height, extractor.width), 32)[0]
    cache_dir = os.path.join(bench.workdir, "beam_cache")
    shutil.rmtree(cache_dir, ignore_errors=True)
    seconds = _run_measured([_tool("retrain-cache"), f"--image_dir={bench.image_dir}",
                             f"--tfhub_module={bench.inception}", f"--bottleneck_dir={cache_dir}",
                             "--runner=DirectRunner", "--direct_running_mode=multi_processing",
                             "--direct_num_workers=2"])[0]
    f.update(beam_images_per_s=count / seconds, beam_in_process_images_per_s=in_process)
    bench.row("retrain-cache, DirectRunner, 2 workers",
              f"{count / seconds:.2f} images/s end to end (in-process extraction: {in_process:.2f})")


def _fine_tune_rate(extractor, paths, labels, preprocessing, batches: int) -> float:
    """Images/s of fine-tuning steps (decoded images, forward and backward, batch 16), after one warm-up batch."""
    from retrain.config import FineTuneConfig
    from retrain.data import module_inputs
    from retrain.module import tuning
    from retrain.training.fine_tune import Tuner

    tunable = tuning.tunable_copy(extractor)
    config = FineTuneConfig(enabled=True)
    tuner = Tuner(tunable, np.zeros((extractor.feature_dim, 4), np.float32) + 0.01, np.zeros(4, np.float32), config,
                  steps_per_epoch=batches)
    stream = iter(module_inputs.shuffled_batches(paths, labels, preprocessing=preprocessing, batch_size=16, seed=(0, 1)))
    tuner._train_step(*next(stream))  # Tracing and the first call: start-up.
    start, count = time.perf_counter(), 0
    for _ in range(batches - 1):
        images, batch_labels = next(stream)
        loss, _ = tuner._train_step(images, batch_labels)
        float(loss)
        count += int(batch_labels.shape[0])
    return count / (time.perf_counter() - start)


def section_fine_tune(bench: Bench):
    from retrain import testing
    from retrain.data import image_lists
    from retrain.data.preprocessing import Preprocessing
    from retrain.module import hub

    f = bench.figures
    module = bench.module("efficientnet_b0_tunable", lambda p: testing.build_keras_module(p, reusable=True))
    extractor = hub.load_feature_extractor(module)
    preprocessing = Preprocessing(extractor.height, extractor.width)
    lists = image_lists.create_image_lists(bench.image_dir, 10, 10)
    paths = lists.paths("training")
    labels = np.array([i for i, (_, sets) in enumerate(lists.items()) for _ in sets["training"]], np.int64)
    batches = min(len(paths) // 16, 4 if bench.args.quick else 12)
    cache_dir = os.path.join(bench.workdir, "fine_tune_cache")
    extraction, tuning_rates = [], []
    for _ in range(1 if bench.args.quick else 3):  # Alternated: the machine drifts.
        extraction.append(_extraction(bench.image_dir, extractor, cache_dir, preprocessing, 16)[0])
        tuning_rates.append(_fine_tune_rate(extractor, paths, labels, preprocessing, batches))
    f.update(fine_tune_images_per_s=_spread(tuning_rates), fine_tune_extraction_images_per_s=_spread(extraction),
             fine_tune_ratio_to_extraction=_spread([t / e for t, e in zip(tuning_rates, extraction)]))
    bench.row("fine-tuning, EfficientNet-B0-sized (forward + backward)", _fmt(f["fine_tune_images_per_s"], 1, " images/s"))
    bench.row("  cold extraction, same module (forward)", _fmt(f["fine_tune_extraction_images_per_s"], 1, " images/s"))
    bench.row("  fine-tuning / extraction", _fmt(f["fine_tune_ratio_to_extraction"], 3))

    tiny = bench.module("tiny_tunable", testing.build_tunable_module)
    for count in (300, 3000):
        folder = os.path.join(bench.workdir, f"fine_tune_images_{count}")
        if not os.path.isdir(folder):
            bench.log(f"Writing {count} JPEGs...")
            testing.make_image_folder(folder, class_names=("a", "b", "c", "d"), images_per_class=count // 4,
                                      min_size=300, max_size=640)
        out = os.path.join(bench.workdir, f"fine_tune_run_{count}")
        shutil.rmtree(out, ignore_errors=True)
        seconds, rss, _ = _run_measured([
            _tool("retrain"), f"--image_dir={folder}", f"--tfhub_module={tiny}", f"--bottleneck_dir={out}/cache",
            f"--output_graph={out}/graph.pb", f"--output_labels={out}/labels.txt", "--summaries_dir=",
            f"--checkpoint_path={out}/checkpoint", "--how_many_training_steps=100", "--random_seed=1",
            "--fine_tune", "--fine_tune_epochs=1"])
        f[f"fine_tune_run_{count}"] = {"seconds": seconds, "peak_rss_mib": rss}
        bench.row(f"retrain --fine_tune, {count} images (tiny module, 1 epoch)",
                  f"{seconds:.1f} s, peak RSS {rss:.0f} MiB")


# The doctor's checks on generated features (10 classes, 1,280 values) and image facts, in a
# fresh process: seconds per check and peak RSS.
_DOCTOR_SCALE = """
import json, resource, sys, time
import numpy as np
from retrain.doctor import duplicates, facts as facts_lib, label_issues, outliers
n, dim = int(sys.argv[1]), 1280
rng = np.random.default_rng(0)
labels = rng.integers(0, 10, n)
centres = rng.normal(size=(10, dim)).astype(np.float32)
features = np.maximum(centres[labels] + rng.normal(scale=2.0, size=(n, dim)).astype(np.float32), 0)
facts = facts_lib.ImageFacts(formats=["JPEG"] * n, widths=np.full(n, 400), heights=np.full(n, 300),
    file_bytes=rng.integers(10000, 90000, n), mean_rgb=rng.random((n, 3), dtype=np.float32) * 255,
    contrast=np.full(n, 40, np.float32), content_hashes=[str(i) for i in range(n)],
    thumbnails=rng.integers(0, 255, (n, 32, 32), dtype=np.uint8),
    perceptual_hashes=rng.integers(0, 2**63, n, dtype=np.uint64))
seconds = {}
for name, check in (("label_issues", lambda: label_issues.find(features, labels, 10)),
                    ("duplicates", lambda: duplicates.find(features, facts, np.ones(n, bool), [""] * n)),
                    ("outliers", lambda: outliers.scores(features))):
    start = time.perf_counter(); check(); seconds[name] = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def section_doctor(bench: Bench):
    from retrain import testing

    f = bench.figures
    folder = os.path.join(bench.workdir, "fine_tune_images_3000")
    if not os.path.isdir(folder):
        bench.log("Writing 3000 JPEGs...")
        testing.make_image_folder(folder, class_names=("a", "b", "c", "d"), images_per_class=750,
                                  min_size=300, max_size=640)
    module = bench.module("near_free_1280", testing.build_near_free_module)
    out = os.path.join(bench.workdir, "doctor_run")
    shutil.rmtree(out, ignore_errors=True)
    command = [_tool("retrain-doctor"), f"--image_dir={folder}", f"--tfhub_module={module}",
               f"--bottleneck_dir={out}/cache", f"--output_dir={out}/report"]
    cold, cold_rss, _ = _run_measured(command)
    warm = [_run_measured(command) for _ in range(1 if bench.args.quick else 3)]
    f["doctor_3000"] = {"cold_seconds": cold, "cold_peak_rss_mib": cold_rss,
                        "warm_seconds": _spread([w[0] for w in warm]), "warm_peak_rss_mib": _spread([w[1] for w in warm])}
    bench.row("retrain-doctor, 3,000 images, cold cache", f"{cold:.1f} s, peak RSS {cold_rss:.0f} MiB")
    bench.row("retrain-doctor, 3,000 images, warm cache", _fmt(f["doctor_3000"]["warm_seconds"], 1, " s")
              + f", peak RSS {max(w[1] for w in warm):.0f} MiB")
    for count in (10000,) if bench.args.quick else (10000, bench.args.doctor_scale):
        done = subprocess.run([sys.executable, "-c", _DOCTOR_SCALE, str(count)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        found = json.loads(done.stdout.strip().splitlines()[-1])
        f[f"doctor_checks_{count}"] = found
        bench.row(f"doctor checks, {count:,} images x 1,280 values",
                  ", ".join(f"{k} {v:.0f} s" for k, v in found["seconds"].items())
                  + f"; peak RSS {found['peak_rss_mib']:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of: {', '.join(SECTIONS)}")
    parser.add_argument("--images", type=int, default=200, help="ordinary synthetic JPEGs (4 classes)")
    parser.add_argument("--phone_photos", type=int, default=16, help="12-megapixel JPEGs for the phone section")
    parser.add_argument("--module", help="a local module directory to use instead of the random Inception v3")
    parser.add_argument("--quick", action="store_true", help="short timings, one repeat (too noisy to quote)")
    parser.add_argument("--batch_sizes", default="8,16,32,64", help="batch sizes tried for the module alone")
    parser.add_argument("--bottleneck_batch_size", type=int, default=32, help="extraction batch (retrain's default)")
    parser.add_argument("--repeats", type=int, default=5, help="cold extractions in the core section")
    parser.add_argument("--steps", type=int, default=4000, help="training steps to time")
    parser.add_argument("--doctor_scale", type=int, default=100000, help="images for the doctor's checks at scale")
    parser.add_argument("--json", help="also write the figures here as JSON")
    parser.add_argument("--workdir", help="keep images, modules and caches here instead of a temporary folder")
    args = parser.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or args.repeats < 1:
        parser.error(f"unknown sections {unknown}" if unknown else "--repeats must be at least 1")
    if args.quick:
        args.images, args.repeats, args.phone_photos = min(args.images, 48), 1, min(args.phone_photos, 6)

    from retrain.commands import cli

    cli.quiet_tensorflow()
    cli.import_tensorflow_quietly(verbose=False)
    import tensorflow as tf

    bench = Bench(args)
    bench.figures["machine"] = f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}"
    for name in sections:
        bench.log(f"== {name}")
        globals()[f"section_{name}"](bench)
    bench.figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{bench.figures['machine']}")
    for name, value in bench.rows:
        print(f"{name:<48} {value}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(bench.figures, out, indent=2)


if __name__ == "__main__":
    main()
