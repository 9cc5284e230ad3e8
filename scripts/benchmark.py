"""Measures where a retrain run spends its time, offline, in one process.

  python scripts/benchmark.py [--images 200] [--repeats 5] [--module DIR] [--quick] [--json out.json]

Builds (unless --module names a real one) a feature-vector module with the real
Inception v3 architecture and random weights (same compute as tfhub.dev's), writes
synthetic JPEGs of realistic sizes (300-640 px), then measures:

  forward        the module alone on pre-decoded tensors, per batch size (images/s)
  cold           bottleneck extraction from files to cache, end to end (images/s),
                 --repeats times on a fresh cache, each against the forward rate at the
                 best batch size measured just before and just after it: the ratio's
                 median and spread
  memory         peak resident memory growth while extracting all the images and while
                 extracting half of them (equal: decoding is streamed)
  warm           reloading every bottleneck from the full cache (s; forward passes: 0),
                 and 4,000 cached bottlenecks of the module's size: the first reload of
                 the process (what a warm run pays) and a second one
  training       4,000 steps of batch 100 on in-memory bottlenecks (s)
  distorted      one training step of batch 100 with live distortions (s), against one
                 undistorted step
  label_image    classifying the folder with the exported frozen graph (images/s),
                 and its ratio to forward at the same batch size
  peak_rss       the process's peak resident memory (MiB)
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np


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


def _warm_cache(workdir: str, count: int, dim: int) -> dict:
    """Writes (once) count cached bottlenecks of dim values, with empty stand-in images.

    Returns:
      The keyword arguments of bottlenecks.load_or_compute that read them back.
    """
    from retrain import bottlenecks

    root = os.path.join(workdir, f"warm_{count}")
    image_dir, cache_dir = os.path.join(root, "images"), os.path.join(root, "cache")
    lists = {}
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        names = [f"{cls}{i:05d}.jpg" for i in range(count // 2)]
        lists[cls] = {"dir": cls, "training": names, "testing": [], "validation": []}
        os.makedirs(os.path.join(image_dir, cls), exist_ok=True)
        for name in names:
            path = os.path.join(image_dir, cls, name)
            if not os.path.exists(path):
                open(path, "wb").close()
            cache = bottlenecks.bottleneck_path(cache_dir, cls, name, "m")
            if not os.path.exists(cache):
                bottlenecks.write_bottleneck(cache, rng.random(dim).astype(np.float32))
    return dict(image_lists=lists, image_dir=image_dir, bottleneck_dir=cache_dir, module_handle="m", dim=dim)


def _warm_reload_time(cache: dict) -> float:
    """Seconds to load every bottleneck of a _warm_cache; fails on a forward pass."""
    from retrain import batching, bottlenecks

    def no_forward(batch):
        raise AssertionError("a warm cache needs no forward pass")

    start = time.perf_counter()
    result = bottlenecks.load_or_compute(
        **cache, decode=batching.threaded_decoder(lambda p: None, 32), extract=no_forward
    )
    elapsed = time.perf_counter() - start
    assert result.reused == sum(len(v["training"]) for v in cache["image_lists"].values())
    return elapsed


def _spread(values) -> dict:
    """Median, minimum and maximum of a list of numbers."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {"median": median, "min": ordered[0], "max": ordered[-1], "all": list(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="synthetic images to write (split over 4 classes)")
    parser.add_argument("--module", help="a local module directory to use instead of the random Inception v3")
    parser.add_argument("--quick", action="store_true", help="a short run: 48 images, short forward timings")
    parser.add_argument("--batch_sizes", default="8,16,32,64", help="batch sizes tried for the forward rate")
    parser.add_argument("--bottleneck_batch_size", type=int, default=32, help="extraction batch (retrain's default)")
    parser.add_argument("--decode_threads", type=int, default=None, help="decoding threads (default: one per core)")
    parser.add_argument("--repeats", type=int, default=5, help="cold extractions, each between two forward timings")
    parser.add_argument("--steps", type=int, default=4000, help="training steps to time")
    parser.add_argument("--json", help="also write the figures here as JSON")
    parser.add_argument("--workdir", help="keep images, module and cache here instead of a temporary folder")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.quick:
        args.images = min(args.images, 48)
        args.repeats = 1

    from retrain import cli

    cli.quiet_tensorflow()
    cli.import_tensorflow_quietly(verbose=False)
    import tensorflow as tf

    from retrain import bottlenecks, export, hub_module, image_lists, inference, module_inputs, testing, train
    from retrain.config import TrainConfig

    workdir = args.workdir or tempfile.mkdtemp(prefix="retrain-benchmark-")
    module = args.module or os.path.join(workdir, "inception_v3_random")
    if not args.module and not os.path.exists(os.path.join(module, "saved_model.pb")):
        print("Building the Inception v3 module (random weights)...", file=sys.stderr)
        testing.build_inception_v3_module(module)
    image_dir = os.path.join(workdir, "images")
    classes = ("a", "b", "c", "d")
    if not os.path.isdir(image_dir):
        print(f"Writing {args.images} JPEGs...", file=sys.stderr)
        testing.make_image_folder(
            image_dir, class_names=classes, images_per_class=args.images // len(classes), min_size=300, max_size=640
        )
    figures = {"machine": f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}", "images": args.images}

    extractor = hub_module.load_feature_extractor(module)
    height, width = extractor.height, extractor.width
    # Before any forward pass, as in a warm run: TensorFlow's idle worker threads keep
    # spinning for a while after heavy ops and would slow the parsing down.
    warm_cache = _warm_cache(workdir, 4000, extractor.feature_dim)
    figures["warm_reload_4000_first_s"] = _warm_reload_time(warm_cache)
    figures["warm_reload_4000_s"] = _warm_reload_time(warm_cache)
    seconds = 3.0 if args.quick else 6.0
    # Two interleaved rounds, so that a slow minute of the machine does not pick the batch.
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    by_batch = {size: [] for size in sizes}
    for _ in range(1 if args.quick else 2):
        for size in sizes:
            by_batch[size].append(_forward_rate(extractor.extract, height, width, size, seconds))
            print(f"forward batch {size}: {by_batch[size][-1]:.2f} images/s", file=sys.stderr)
    rates = {size: float(np.mean(values)) for size, values in by_batch.items()}
    best_batch = max(rates, key=rates.get)
    figures["forward_by_batch"] = rates
    figures["forward_best_batch"] = best_batch

    lists = image_lists.create_image_lists(image_dir, 10, 10)
    count = sum(len(v[c]) for v in lists.values() for c in image_lists.CATEGORIES)
    cache_dir = os.path.join(workdir, "cache")
    calls = []

    def extract(batch):
        calls.append(len(batch))
        return extractor.extract(tf.convert_to_tensor(batch)).numpy()

    def run_cache(image_lists_=lists):
        return bottlenecks.load_or_compute(
            image_lists=image_lists_, image_dir=image_dir, bottleneck_dir=cache_dir, module_handle=module,
            dim=extractor.feature_dim,
            decode=module_inputs.module_input_decoder(height, width, args.bottleneck_batch_size, args.decode_threads),
            extract=extract,
        )

    def cold_run(image_lists_=lists):
        """(images/s, peak RSS growth in MiB, Bottlenecks) of one extraction into an empty cache."""
        shutil.rmtree(cache_dir, ignore_errors=True)
        with _PeakRss() as memory:
            start = time.perf_counter()
            result = run_cache(image_lists_)
            elapsed = time.perf_counter() - start
        return result.computed / elapsed, memory.growth_mib, result

    # Decoded images are streamed: half the images should need as much memory. Measured
    # first, so that it also carries the process's one-time allocations.
    half = {
        label: {**lists_, **{c: lists_[c][: len(lists_[c]) // 2] for c in image_lists.CATEGORIES}}
        for label, lists_ in lists.items()
    }
    figures["cold_rss_growth_half_mib"] = cold_run(half)[1]
    # The forward rate drifts over a run (other load, heat): each extraction is compared
    # with the mean of the forward rates measured just before and just after it.
    forward = [_forward_rate(extractor.extract, height, width, best_batch, seconds)]
    cold_rates, ratios, growth = [], [], []
    for repeat in range(args.repeats):
        rate, growth_mib, cache = cold_run()
        forward.append(_forward_rate(extractor.extract, height, width, best_batch, seconds))
        cold_rates.append(rate)
        growth.append(growth_mib)
        ratios.append(rate / ((forward[-2] + forward[-1]) / 2))
        print(f"cold extraction {repeat + 1}: {rate:.2f} images/s, {ratios[-1]:.3f} of forward", file=sys.stderr)
    figures["forward_images_per_s"] = _spread(forward)
    figures["cold_images_per_s"] = _spread(cold_rates)
    figures["cold_ratio_to_forward"] = _spread(ratios)
    figures["cold_rss_growth_mib"] = max(growth)
    calls.clear()
    start = time.perf_counter()
    run_cache()
    figures["warm_reload_s"] = time.perf_counter() - start
    figures["warm_forward_passes"] = len(calls)
    figures["warm_bottlenecks"] = count

    # Training on bottlenecks of the module's real size; 4,000 steps, batch 100.
    config = TrainConfig(how_many_training_steps=args.steps)
    start = time.perf_counter()
    train.train(sets=cache.sets, class_count=len(classes), train_config=config, seed=0)
    figures["training_s"] = time.perf_counter() - start
    figures["training_steps"] = args.steps

    # One distorted training step (retrain.py's live distortion mode), batch 100.
    from retrain import distortions
    from retrain.config import DistortionConfig

    training_paths = cache.sets["training"].image_paths
    kept, positions, _ = distortions.decode_training_images(
        training_paths, budget_bytes=distortions.memory_budget_bytes(), workers=os.cpu_count() or 1
    )
    batches = distortions.DistortedBatches(
        images=kept, labels=cache.sets["training"].labels[positions],
        distorter=distortions.Distorter(
            DistortionConfig(flip_left_right=True, random_crop=10, random_scale=10, random_brightness=10), height, width
        ),
        extract=extract, batch_size=100, seed=0, workers=os.cpu_count() or 1,
    )
    batches()
    distorted_steps = 1 if args.quick else 3
    start = time.perf_counter()
    for _ in range(distorted_steps):
        batches()
    figures["distorted_step_s"] = (time.perf_counter() - start) / distorted_steps
    figures["undistorted_step_s"] = figures["training_s"] / args.steps

    graph_path = os.path.join(workdir, "graph.pb")
    dim = extractor.feature_dim
    exporter = export.GraphExporter(extractor, len(classes), "final_result")
    exporter.write(graph_path, np.zeros((dim, len(classes)), np.float32), np.zeros(len(classes), np.float32))
    classifier = inference.load_classifier(graph_path)
    paths, _ = inference.find_images([image_dir])
    label_batch = 32
    list(inference.classify_files(classifier, paths[:label_batch], mean=0, std=255, batch_size=label_batch))
    start = time.perf_counter()
    for _ in inference.classify_files(classifier, paths, mean=0, std=255, batch_size=label_batch):
        pass
    figures["label_image_images_per_s"] = len(paths) / (time.perf_counter() - start)
    graph_forward = _forward_rate(classifier.scores, height, width, label_batch, seconds)
    figures["label_image_forward_images_per_s"] = graph_forward
    figures["label_image_ratio_to_forward"] = figures["label_image_images_per_s"] / graph_forward
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def spread(name, digits=2):
        value = figures[name]
        return f"{value['median']:.{digits}f} (runs: {value['min']:.{digits}f}-{value['max']:.{digits}f})"

    rows = [
        (f"forward (best batch {best_batch})", spread("forward_images_per_s") + " images/s"),
        ("cold extraction", spread("cold_images_per_s") + " images/s"),
        ("cold / forward", spread("cold_ratio_to_forward", 3)),
        ("RSS growth while extracting", f"{figures['cold_rss_growth_mib']:.0f} MiB "
         f"(half the images: {figures['cold_rss_growth_half_mib']:.0f} MiB)"),
        ("warm reload", f"{figures['warm_reload_s']:.3f} s for {count} bottlenecks, {figures['warm_forward_passes']} forward passes"),
        ("warm reload of 4000", f"{figures['warm_reload_4000_first_s']:.3f} s first, {figures['warm_reload_4000_s']:.3f} s again"),
        (f"training {args.steps} steps", f"{figures['training_s']:.2f} s"),
        ("distorted training step", f"{figures['distorted_step_s']:.2f} s (undistorted: {figures['undistorted_step_s'] * 1000:.2f} ms)"),
        ("label-image folder", f"{figures['label_image_images_per_s']:.2f} images/s ({figures['label_image_ratio_to_forward']:.3f} of its forward {graph_forward:.2f})"),
        ("peak RSS", f"{figures['peak_rss_mib']:.0f} MiB"),
    ]
    print(f"\n{figures['machine']}, {count} images")
    for name, value in rows:
        print(f"{name:<28} {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
