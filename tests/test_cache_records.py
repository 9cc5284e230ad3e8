"""A cache that knows what it holds: content records, module fingerprints, read-only caches,
the older command lines, and reproducible artifacts."""

import hashlib
import json
import os
import shutil
import time

import numpy as np
import pytest
from conftest import (
    cache_files,
    holds_out_every_class,
    make_split_safe_folder,
    quick_config,
    run_tool,
)

import retrain
from retrain import testing
from retrain.cache import layout
from retrain.cache import records as cache_records
from retrain.commands import legacy
from retrain.data import storage


def config_for(tmp_path, image_dir, module, name="out", **changes):
    return quick_config(tmp_path / name, image_dir, module, steps=30, seed=2, testing_percentage=10,
                        bottleneck_dir=tmp_path / "cache", **changes)


@pytest.fixture
def folder(tmp_path):
    return make_split_safe_folder(tmp_path, "images", class_names=("red", "green"), images_per_class=12)


def touch_all(root, seconds_from_now):
    when = time.time() + seconds_from_now
    for directory, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(directory, name), (when, when))


def test_a_restored_cache_on_a_fresh_checkout_computes_nothing(tmp_path, folder, tiny_module):
    first = retrain.run(config_for(tmp_path, folder, tiny_module))
    assert first.bottlenecks_computed == 24 and first.bottlenecks_reused == 0
    # A CI job: the cache comes back from its store, the images from a fresh checkout
    # (newer mtimes, same content).
    touch_all(tmp_path / "cache", -3600)
    touch_all(folder, +60)
    again = retrain.run(config_for(tmp_path, folder, tiny_module))
    assert again.bottlenecks_computed == 0 and again.bottlenecks_reused == 24
    # Their records were refreshed: the next run needs no reading of images either.
    records = cache_records.CacheRecords(str(tmp_path / "cache"), layout.mangle_module_name(tiny_module), "").load()
    image = os.path.join(folder, "red", "red_000.jpg")
    key = os.path.join("red", f"red_000.jpg_{layout.mangle_module_name(tiny_module)}.txt")
    assert records.get(os.path.join(str(tmp_path / "cache"), key)).mtime_ns == os.stat(image).st_mtime_ns


def test_changed_content_with_an_older_mtime_is_recomputed(tmp_path, folder, tiny_module, caplog):
    caplog.set_level("INFO", logger="absl")
    retrain.run(config_for(tmp_path, folder, tiny_module))
    image = os.path.join(folder, "green", "green_003.jpg")
    old = os.stat(image)
    shutil.copyfile(os.path.join(folder, "red", "red_001.jpg"), image)  # cp -p / rsync -t: old mtime.
    os.utime(image, ns=(old.st_atime_ns, old.st_mtime_ns - 10**12))
    again = retrain.run(config_for(tmp_path, folder, tiny_module))
    assert again.bottlenecks_computed == 1
    assert f"Image {image} changed since its bottleneck was cached" in caplog.text


def test_same_size_same_mtime_needs_no_reading(tmp_path, folder, tiny_module, monkeypatch):
    retrain.run(config_for(tmp_path, folder, tiny_module))
    read = []
    original = cache_records.content_digest
    monkeypatch.setattr(cache_records, "content_digest", lambda data: read.append(1) or original(data))
    again = retrain.run(config_for(tmp_path, folder, tiny_module))
    assert again.bottlenecks_computed == 0 and read == []


def test_replaced_module_weights_recompute_everything_with_one_warning(tmp_path, folder, caplog):
    module = testing.build_tiny_module(str(tmp_path / "module"), seed=0)
    retrain.run(config_for(tmp_path, folder, module))
    shutil.rmtree(module)
    testing.build_tiny_module(module, seed=1)  # New weights, same path.
    caplog.set_level("WARNING", logger="absl")
    again = retrain.run(config_for(tmp_path, folder, module))
    assert again.bottlenecks_computed == 24
    warnings = [r.getMessage() for r in caplog.records if "is not the one its cached bottlenecks" in r.getMessage()]
    assert len(warnings) == 1 and module in warnings[0]
    caplog.clear()
    third = retrain.run(config_for(tmp_path, folder, module))
    assert third.bottlenecks_computed == 0 and "is not the one" not in caplog.text


def test_a_cache_written_by_retrain_py_is_adopted(tmp_path, folder, tiny_module):
    from retrain.data import images
    from retrain.module import hub

    extractor = hub.load_feature_extractor(tiny_module)
    lists = retrain.create_image_lists(folder, 10, 10)
    for label, sets in lists.items():
        for category in ("training", "testing", "validation"):
            for name in sets[category]:
                # As retrain.py wrote them: str() of each float32, joined by commas, no records.
                pixels = images.to_module_input(images.read_image(lists.image_path(label, name)), 24, 24)
                values = extractor.extract(pixels[np.newaxis]).numpy()[0]
                path = layout.bottleneck_path(str(tmp_path / "cache"), sets["dir"], name, tiny_module)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(",".join(str(v) for v in values))
    assert not os.path.exists(tmp_path / "cache" / ".retrain")
    result = retrain.run(config_for(tmp_path, folder, tiny_module))
    assert result.bottlenecks_computed == 0 and result.bottlenecks_reused == 24
    shards = os.listdir(layout.records_dir(str(tmp_path / "cache"), layout.mangle_module_name(tiny_module)))
    assert len(shards) == 1  # Adopted: every entry now has a record.
    shard = json.load(open(os.path.join(layout.records_dir(
        str(tmp_path / "cache"), layout.mangle_module_name(tiny_module)), shards[0])))
    assert len(shard["entries"]) == 24
    digest = hashlib.sha256(open(os.path.join(folder, "red", "red_000.jpg"), "rb").read()).hexdigest()[:32]
    assert digest in {entry[2] for entry in shard["entries"].values()}
    # retrain.py's own reader still reads every file we keep.
    for path in cache_files(tmp_path / "cache"):
        [float(x) for x in open(path).read().split(",")]


def test_shards_from_many_runs_are_merged(tmp_path):
    records = cache_records.CacheRecords(str(tmp_path), "m", "fp")
    for run in range(20):
        records = cache_records.CacheRecords(str(tmp_path), "m", "fp").load()
        records.put(str(tmp_path / "a" / f"x{run}.txt"), cache_records.Record(run, run, "d"))
        records.save()
    names = os.listdir(records.folder)
    assert len(names) <= 16
    merged = cache_records.CacheRecords(str(tmp_path), "m", "fp").load()
    assert [merged.get(str(tmp_path / "a" / f"x{run}.txt")).size for run in range(20)] == list(range(20))
    other = cache_records.CacheRecords(str(tmp_path), "m", "another fingerprint").load()
    assert other.module_changed and other.get(str(tmp_path / "a" / "x3.txt")) is None


def test_unwritable_cache_folder_trains_with_one_warning(tmp_path, folder, tiny_module, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # Unwritable even for root: a path under a file.
    caplog.set_level("WARNING", logger="absl")
    config = config_for(tmp_path, folder, tiny_module)
    result = retrain.run(retrain.RetrainConfig(**{**config.__dict__, "bottleneck_dir": str(blocker / "cache")}))
    assert result.bottlenecks_computed == 24 and result.test_accuracy is not None
    warnings = [r.getMessage() for r in caplog.records if "Cannot write to the bottleneck cache" in r.getMessage()]
    assert len(warnings) == 1 and "computed in memory and not saved" in warnings[0]
    assert os.path.exists(tmp_path / "out" / "graph.pb")


def test_read_only_shared_cache_is_used_and_never_written(tmp_path, folder, tiny_module, caplog, monkeypatch):
    retrain.run(config_for(tmp_path, folder, tiny_module))
    before = {p: open(p, "rb").read() for p in cache_files(tmp_path / "cache")}
    os.remove(sorted(before)[0])  # One entry missing from the shared cache.
    rng = np.random.default_rng(9)
    for i in range(2):  # Two new images.
        testing.synthetic_image(rng, testing.PALETTE[1]).save(os.path.join(folder, "green", f"new_{i}.jpg"))
    cache = str(tmp_path / "cache")
    real_write = storage.LocalStorage.write_bytes

    def read_only(self, path, data):
        if path.startswith(cache):
            raise PermissionError(30, "Read-only file system")
        return real_write(self, path, data)

    monkeypatch.setattr(storage.LocalStorage, "write_bytes", read_only)
    caplog.set_level("WARNING", logger="absl")
    result = retrain.run(config_for(tmp_path, folder, tiny_module))
    assert result.bottlenecks_reused == 23 and result.bottlenecks_computed == 1 + 2
    assert len([r for r in caplog.records if "Cannot write to the bottleneck cache" in r.getMessage()]) == 1
    after = {p: open(p, "rb").read() for p in cache_files(tmp_path / "cache")}
    assert after == {p: c for p, c in before.items() if p != sorted(before)[0]}


@pytest.mark.parametrize(
    "architecture, handle, size",
    [
        ("mobilenet_0.50_224", "https://tfhub.dev/google/imagenet/mobilenet_v1_050_224/feature_vector/5", 224),
        ("MobileNet_1.0_128_quantized", "https://tfhub.dev/google/imagenet/mobilenet_v1_100_128/feature_vector/5", 128),
        ("mobilenet_0.25_160", "https://tfhub.dev/google/imagenet/mobilenet_v1_025_160/feature_vector/5", 160),
    ],
)
def test_architecture_maps_to_the_matching_mobilenet(architecture, handle, size):
    choice = legacy.resolve(architecture, None, None)
    assert (choice.tfhub_module, choice.image_size) == (handle, size)
    assert len(choice.messages) == 1 and handle in choice.messages[0]
    assert ("quantization now happens at export" in choice.messages[0]) == architecture.endswith("quantized")


def test_architecture_errors_and_inception():
    assert legacy.resolve("inception_v3", None, None).tfhub_module == retrain.config.DEFAULT_TFHUB_MODULE
    with pytest.raises(ValueError, match="not one retrain.py knew"):
        legacy.resolve("mobilenet_0.60_224", None, None)
    with pytest.raises(ValueError, match="both name the module"):
        legacy.resolve("inception_v3", None, "/some/module")


def test_model_dir_without_the_old_graph_is_the_download_cache(tmp_path):
    choice = legacy.resolve(None, str(tmp_path), None)
    assert choice.tfhub_cache_dir == str(tmp_path) and choice.tfhub_module == retrain.config.DEFAULT_TFHUB_MODULE
    assert "TFHUB_CACHE_DIR" in choice.messages[0]


def codelab_tf_files(tmp_path, folder):
    """The codelab's tf_files, its flower_photos a copy of folder, under tmp_path/home<k>: the first
    k at which the split (it hashes full paths) still holds out images of every class."""
    for k in range(100):
        tf_files = tmp_path / f"home{k}" / "tf_files"
        if holds_out_every_class(folder, tf_files / "flower_photos"):
            shutil.copytree(folder, tf_files / "flower_photos")
            return tf_files
    raise AssertionError(f"no home under {tmp_path} holds out images of every class")


@pytest.mark.slow
def test_the_codelab_command_line_runs_as_written(tmp_path, folder):
    tf_files = codelab_tf_files(tmp_path, folder)
    (tf_files / "inception").mkdir(parents=True)
    testing.build_legacy_inception_graph(str(tf_files / "inception" / "classify_image_graph_def.pb"))
    result = run_tool(
        "retrain",
        f"--bottleneck_dir={tf_files}/bottlenecks",
        "--how_many_training_steps=50",
        f"--model_dir={tf_files}/inception",
        f"--output_graph={tf_files}/retrained_graph.pb",
        f"--output_labels={tf_files}/retrained_labels.txt",
        "--image_dir", f"{tf_files}/flower_photos",
        f"--summaries_dir={tmp_path}/logs", f"--checkpoint_path={tmp_path}/ckpt",
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "holds the 2015 Inception v3 graph: it is the module" in result.stderr
    assert "Final test accuracy" in result.stderr
    # Cache files named as the old script named them, so its caches are reused.
    assert all(p.endswith("_inception_v3.txt") for p in cache_files(tf_files / "bottlenecks"))
    assert open(tf_files / "retrained_labels.txt").read() == "green\nred\n"
    classified = retrain.classify(retrain.LabelImageConfig(
        graph=str(tf_files / "retrained_graph.pb"), labels=str(tf_files / "retrained_labels.txt"),
        images=(str(tf_files / "flower_photos" / "red" / "red_005.jpg"),)))
    assert classified.images[0].ranked(classified.labels, 1)[0][0] == "red"


def test_two_seeded_runs_write_identical_files(tmp_path, folder, tiny_module):
    files = ("graph.pb", "labels.txt")
    digests = []
    for name in ("first", "second"):
        config = config_for(tmp_path, folder, tiny_module, name=name)
        output = retrain.OutputConfig(**{**config.output.__dict__, "intermediate_store_frequency": 10,
                                         "intermediate_output_graphs_dir": str(tmp_path / name / "steps") + "/"})
        retrain.run(retrain.RetrainConfig(**{**config.__dict__, "output": output}))
        paths = [tmp_path / name / f for f in files] + sorted((tmp_path / name / "steps").iterdir())
        digests.append([hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths])
    assert digests[0] == digests[1] and len(digests[0]) == 4


def test_a_warm_run_never_loads_the_module(tmp_path, folder, tiny_module, monkeypatch):
    from retrain.module import hub

    first = retrain.run(config_for(tmp_path, folder, tiny_module))
    graph = (tmp_path / "out" / "graph.pb").read_bytes()
    loads = []
    original = hub._load
    monkeypatch.setattr(hub, "_load", lambda *args: loads.append(args) or original(*args))
    again = retrain.run(config_for(tmp_path, folder, tiny_module, name="again"))
    assert again.bottlenecks_computed == 0 and not loads
    # The same graph, from the frozen module kept beside the cache.
    assert (tmp_path / "again" / "graph.pb").read_bytes() == graph
    assert again.test_accuracy == first.test_accuracy
    # One changed image: the module is loaded to compute its bottleneck.
    image = os.path.join(folder, "green", "green_003.jpg")
    shutil.copyfile(os.path.join(folder, "red", "red_001.jpg"), image)
    third = retrain.run(config_for(tmp_path, folder, tiny_module, name="third"))
    assert third.bottlenecks_computed == 1 and len(loads) == 1
