import os
import sys

import numpy as np
import pytest
from conftest import cache_files

from retrain.cache import fill, layout, plan, text_format
from retrain.data import batching, image_lists
from retrain.errors import ImageError

MODULE = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/1"


def test_cache_path_mangles_module_as_retrain_py():
    path = layout.bottleneck_path("/tmp/bottleneck", "cat", "cat.333.jpg", MODULE)
    assert path == (
        "/tmp/bottleneck/cat/cat.333.jpg_https~tfhub.dev~google~imagenet~mobilenet_v2_100_224~feature_vector~1.txt"
    )
    assert layout.mangle_module_name("C:\\mods/x:1") == "C~~mods~x~1"


def test_text_format_round_trips_float32_exactly():
    values = np.array([1 / 3, 1e-8, -2.5, 0.0, 123456.79], dtype=np.float32)
    text = text_format.format_bottleneck(values)
    assert text == "0.33333334,1e-08,-2.5,0.0,123456.79"
    np.testing.assert_array_equal(text_format.parse_bottleneck(text, 5), values)


def test_parse_rejects_garbage_and_wrong_length():
    with pytest.raises(ValueError):
        text_format.parse_bottleneck("1.0,abc")
    with pytest.raises(ValueError):
        text_format.parse_bottleneck("")
    with pytest.raises(ValueError):
        text_format.parse_bottleneck("1.0,2.0", dim=3)


def make_folder(root, classes=("a", "b"), per_class=6):
    for name in classes:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            with open(os.path.join(root, name, f"{name}{i}.jpg"), "w") as f:
                f.write(f"{name}:{i}")
    return image_lists.create_image_lists(root, 20, 20)


def fake_load(path):
    """'Decodes' our fake files: the pixel value encodes the class and index."""
    text = open(path).read()
    if text == "broken":
        raise ImageError(f"{path} is not a readable image")
    name, i = text.split(":")
    value = (ord(name) - ord("a")) * 10 + int(i)
    return np.full((2, 2, 3), value, np.float32)


class CountingExtract:
    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append(len(batch))
        return np.stack([[b.mean(), 1.0 / 3.0, 0.5] for b in batch]).astype(np.float32)


def load(tmp_path, lists, extract, dim=3, batch_size=4):
    return fill.load_or_compute(
        image_lists=lists,
        bottleneck_dir=str(tmp_path / "cache"),
        module_handle="/mods/tiny",
        dim=dim,
        decode=batching.threaded_decoder(fake_load, batch_size),
        extract=extract,
    )


def test_computes_in_batches_then_reuses_cache(tmp_path, caplog):
    caplog.set_level("INFO", logger="absl")
    lists = make_folder(str(tmp_path / "imgs"))
    extract = CountingExtract()
    first = load(tmp_path, lists, extract)
    assert extract.batches == [4, 4, 4]
    assert first.computed == 12 and first.reused == 0
    assert "12 bottleneck files created." in caplog.messages
    cache_file = layout.bottleneck_path(str(tmp_path / "cache"), "a", "a0.jpg", "/mods/tiny")
    assert os.path.basename(cache_file) == "a0.jpg_~mods~tiny.txt"
    assert open(cache_file).read() == "0.0,0.33333334,0.5"

    again = CountingExtract()
    second = load(tmp_path, lists, again)
    assert again.batches == []
    assert second.reused == 12
    for category in image_lists.CATEGORIES:
        np.testing.assert_array_equal(first.sets[category].features, second.sets[category].features)
        assert first.sets[category].image_paths == second.sets[category].image_paths


def test_read_only_sets_hold_what_is_cached_and_write_nothing(tmp_path):
    lists = make_folder(str(tmp_path / "imgs"))
    entries = plan.entries(lists, bottleneck_dir=str(tmp_path / "cache"), module_name="/mods/tiny")
    first = fill.fill(entries[:5], dim=3, decode=batching.threaded_decoder(lambda e: fake_load(e.image_path), 4),
                      extract=CountingExtract(), bottleneck_dir=str(tmp_path / "cache"), module_handle="/mods/tiny",
                      source="m")
    assert first.computed == 5
    before = {p: os.stat(p).st_mtime_ns for p in cache_files(tmp_path / "cache")}
    records_before = sorted(os.listdir(tmp_path / "cache" / layout.RECORDS_FOLDER / "records" / "~mods~tiny"))
    held, missing = fill.read_only_sets(entries, dim=3, bottleneck_dir=str(tmp_path / "cache"),
                                        module_handle="/mods/tiny", source="m")
    assert missing == entries[5:]
    assert sum(len(s) for s in held.sets.values()) == 5 and held.reused == 5
    assert all(s.source == "m" for s in held.sets.values())
    assert {p: os.stat(p).st_mtime_ns for p in cache_files(tmp_path / "cache")} == before
    assert sorted(os.listdir(tmp_path / "cache" / layout.RECORDS_FOLDER / "records" / "~mods~tiny")) == records_before


def test_sets_hold_labels_in_class_order(tmp_path):
    lists = make_folder(str(tmp_path / "imgs"))
    result = load(tmp_path, lists, CountingExtract())
    total = sum(len(s) for s in result.sets.values())
    assert total == 12
    for category, bset in result.sets.items():
        assert list(bset.labels) == sorted(bset.labels)
        for path, label, row in zip(bset.image_paths, bset.labels, bset.features):
            assert os.path.basename(os.path.dirname(path)) == "ab"[label]
            assert row[0] == fake_load(path).mean()


@pytest.mark.parametrize("content", ["1.0,oops,3.0", "", "1.0,2.0"])
def test_corrupt_or_short_cache_file_is_rebuilt(tmp_path, content, caplog):
    caplog.set_level("WARNING", logger="absl")
    lists = make_folder(str(tmp_path / "imgs"))
    load(tmp_path, lists, CountingExtract())
    cache_file = layout.bottleneck_path(str(tmp_path / "cache"), "b", "b2.jpg", "/mods/tiny")
    with open(cache_file, "w") as f:
        f.write(content)
    extract = CountingExtract()
    load(tmp_path, lists, extract)
    assert extract.batches == [1]
    assert open(cache_file).read() == "12.0,0.33333334,0.5"
    assert "Invalid float found, recreating bottleneck" in caplog.text


def test_replaced_image_is_recomputed(tmp_path):
    lists = make_folder(str(tmp_path / "imgs"))
    load(tmp_path, lists, CountingExtract())
    image = str(tmp_path / "imgs" / "a" / "a1.jpg")
    with open(image, "w") as f:
        f.write("a:7")  # Another picture, under the same name.
    extract = CountingExtract()
    load(tmp_path, lists, extract)
    assert extract.batches == [1]


def test_broken_image_is_skipped_and_reported(tmp_path):
    lists = make_folder(str(tmp_path / "imgs"))
    broken = str(tmp_path / "imgs" / "a" / "a3.jpg")
    with open(broken, "w") as f:
        f.write("broken")
    result = load(tmp_path, lists, CountingExtract())
    assert [path for path, _ in result.failed_images] == [broken]
    assert all(broken not in s.image_paths for s in result.sets.values())
    assert sum(len(s) for s in result.sets.values()) == 11
    assert not os.path.exists(layout.bottleneck_path(str(tmp_path / "cache"), "a", "a3.jpg", "/mods/tiny"))


def test_no_temporary_files_left_in_cache(tmp_path):
    lists = make_folder(str(tmp_path / "imgs"))
    load(tmp_path, lists, CountingExtract())
    leftovers = [n for _, _, files in os.walk(tmp_path / "cache") for n in files
                 if not n.endswith(".txt") and not n.endswith(".json")]
    assert leftovers == []
    assert len(cache_files(tmp_path / "cache")) == 12


def test_two_runs_sharing_a_cache_at_once_leave_it_valid(tmp_path):
    import threading

    lists = make_folder(str(tmp_path / "imgs"), per_class=40)
    errors = []

    def run_once():
        try:
            load(tmp_path, lists, CountingExtract(), batch_size=3)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=run_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    files = cache_files(tmp_path / "cache")
    assert len(files) == 80
    for path in files:
        text_format.parse_bottleneck(open(path).read(), 3)


def test_cache_files_read_back_the_way_retrain_py_read_them(tmp_path):
    values = np.random.default_rng(2).normal(size=2048).astype(np.float32)
    path = str(tmp_path / "x.jpg_m.txt")
    text_format.write_bottleneck(path, values)
    text = open(path).read()
    original_reader = [float(x) for x in text.split(",")]  # retrain.py's own parsing
    np.testing.assert_array_equal(np.array(original_reader, np.float32), values)
    # And a file in retrain.py's format (str() of each float32) reads back here.
    np.testing.assert_array_equal(text_format.parse_bottleneck(",".join(str(v) for v in values), 2048), values)


def test_reading_many_files_at_once_equals_reading_each(tmp_path, caplog, monkeypatch):
    caplog.set_level("INFO", logger="absl")
    rng = np.random.default_rng(5)
    values = (rng.normal(size=(3, 6)) * 10.0 ** rng.integers(-40, 30, size=(3, 6))).astype(np.float32)
    contents = {
        "ours": text_format.format_bottleneck(values[0]),
        "retrain_py": ",".join(repr(float(v)) for v in values[1]),  # Python floats' repr
        "newline": text_format.format_bottleneck(values[2]) + "\n",
        "garbage": "1.0,oops,3,4,5,6",
        "short": "1.0,2.0",
        "empty": "",
        "binary": b"\xff\xfe\x00\x01",
    }
    paths = []
    for name, content in contents.items():
        path = str(tmp_path / f"{name}.txt")
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
        paths.append(path)
    paths.append(str(tmp_path / "missing.txt"))

    caplog.clear()
    reread = []
    read_and_parse = text_format.read_cached
    monkeypatch.setattr(text_format, "read_cached", lambda path, dim: reread.append(path) or read_and_parse(path, dim))
    together = text_format.read_cached_files(paths, 6)
    monkeypatch.undo()
    # Only what the parallel reader could not parse is read again, one by one.
    assert sorted(os.path.basename(p) for p in reread) == ["binary.txt", "empty.txt", "garbage.txt", "missing.txt", "short.txt"]
    warnings_together = [r.getMessage() for r in caplog.records]
    caplog.clear()
    one_by_one = [text_format.read_cached(path, 6) for path in paths]
    assert sorted(warnings_together) == sorted(r.getMessage() for r in caplog.records)
    for name, a, b in zip(list(contents) + ["missing"], together, one_by_one):
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert [v is not None for v in together] == [True, True, True, False, False, False, False, False]
    np.testing.assert_array_equal(together[0], values[0])
    np.testing.assert_array_equal(together[1], values[1])
    assert warnings_together.count("Invalid float found, recreating bottleneck") == 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_cache_writer_thread_runs_at_lowest_priority_and_the_caller_does_not():
    import concurrent.futures
    import threading

    def priority():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = priority()
    with concurrent.futures.ThreadPoolExecutor(1, initializer=fill._lower_thread_priority) as pool:
        assert pool.submit(priority).result() == 19
    assert priority() == before
