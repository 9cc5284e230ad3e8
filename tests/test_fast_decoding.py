"""--fast_jpeg_decode: large JPEGs decoded at reduced scale, cached apart, and decoded alike wherever the model goes."""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import cache_files, quick_config
from PIL import Image

import retrain
from retrain import label_image, testing
from retrain.data import images, module_inputs
from retrain.data.preprocessing import Preprocessing
from retrain.exports import frozen_graph


def big_jpeg(path, colour, size=(1200, 900), seed=0, orientation=None):
    rng = np.random.default_rng(seed)
    small = testing.synthetic_image(rng, colour, 60, 80).resize(size)
    noise = rng.integers(-10, 11, size=(size[1], size[0], 1))
    pixels = np.clip(np.asarray(small).astype(int) + noise, 0, 255).astype(np.uint8)
    kwargs = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    Image.fromarray(pixels).save(path, "JPEG", quality=90, **kwargs)
    return path


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("big") / "photos"
    for c, name in enumerate(("red", "green", "blue")):
        os.makedirs(root / name)
        for i in range(8):
            big_jpeg(root / name / f"{name}_{i}.jpg", testing.PALETTE[c], seed=10 * c + i,
                     orientation=6 if i == 0 else None)
    return str(root)


@pytest.mark.parametrize("module_size, orientation, expected", [
    ((24, 24), 1, (113, 150)), ((299, 299), 1, (450, 600)), ((300, 300), 4, (450, 600)),
    ((600, 600), 1, (900, 1200)), ((1000, 1000), 1, (900, 1200)),
    # Turned a quarter (EXIF 6) the upright image is 1200 high: 1/2 still gives 600 rows.
    ((500, 300), 6, (450, 600)), ((500, 300), 1, (900, 1200)),
])
def test_the_largest_reduction_that_keeps_the_module_size(tmp_path, module_size, orientation, expected):
    contents = tf.constant(open(big_jpeg(tmp_path / "x.jpg", (200, 30, 30)), "rb").read())
    reduced = Preprocessing(*module_size, fast_jpeg_decode=True)._decode_reduced_jpeg(contents, tf.constant(orientation))
    assert tuple(reduced.shape[:2]) == expected


def test_fast_pixels_are_close_to_exact_ones(big_folder):
    path = os.path.join(big_folder, "red", "red_1.jpg")
    exact = Preprocessing(24, 24).decode_file(path)
    fast = Preprocessing(24, 24, fast_jpeg_decode=True).decode_file(path)
    assert not np.array_equal(exact, fast) and np.abs(exact - fast).mean() < 0.08  # Point-sampled grain differs.
    turned = os.path.join(big_folder, "red", "red_0.jpg")  # EXIF orientation 6: upright either way.
    assert Preprocessing(24, 32, fast_jpeg_decode=True).decode_file(turned).shape == (24, 32, 3)


def config_for(tmp_path, folder, module, fast, name):
    out = tmp_path / name
    return quick_config(out, folder, module, steps=100, seed=1, testing_percentage=20, validation_percentage=20,
                        bottleneck_dir=tmp_path / "cache", fast_jpeg_decode=fast, saved_model_dir=str(out / "served"))


HINT = "--fast_jpeg_decode would decode them at reduced scale"


def pretend_decoding_takes(monkeypatch, exact_ms, fast_ms):
    """Timings are the machine's: these synthetic noisy JPEGs decode only 1.3-1.5x faster at reduced
    scale (real photos 1.7x), close to the hint's threshold on a busy machine, so tests set them."""
    seen, measure = [], module_inputs.decoding_seconds

    def seconds(contents, preprocessing):
        seen.append(measure(contents, preprocessing, repeats=1))  # Really decodes.
        return (fast_ms if preprocessing.fast_jpeg_decode else exact_ms) / 1000

    monkeypatch.setattr(module_inputs, "decoding_seconds", seconds)
    return seen


def test_the_hint_needs_a_real_speed_up(tmp_path, big_folder, tiny_module, caplog, monkeypatch):
    caplog.set_level("INFO", logger="absl")
    seen = pretend_decoding_takes(monkeypatch, exact_ms=10, fast_ms=9)
    assert retrain.run(config_for(tmp_path, big_folder, tiny_module, False, "exact")).bottlenecks_computed == 24
    assert len(seen) == 2 and all(0 < s < 10 for s in seen)
    assert HINT not in caplog.text


def test_fast_entries_are_cached_apart_and_models_decode_as_they_were_trained(tmp_path, big_folder, tiny_module,
                                                                               caplog, monkeypatch):
    caplog.set_level("INFO", logger="absl")
    pretend_decoding_takes(monkeypatch, exact_ms=10, fast_ms=4)
    exact = retrain.run(config_for(tmp_path, big_folder, tiny_module, False, "exact"))
    assert exact.bottlenecks_computed == 24
    assert caplog.text.count(HINT) == 1  # The hint, once...
    assert "in 4 ms instead of 10 ms each here (2.5x" in caplog.text
    fast = retrain.run(config_for(tmp_path, big_folder, tiny_module, True, "fast"))
    assert fast.bottlenecks_computed == 24  # Never mixed with the exact entries...
    assert caplog.text.count(HINT) == 1  # ...and not when decoding fast already.
    names = [os.path.basename(p) for p in cache_files(tmp_path / "cache")]
    assert len(names) == 48 and sum(n.endswith("_fastjpeg.txt") for n in names) == 24
    assert retrain.run(config_for(tmp_path, big_folder, tiny_module, False, "again")).bottlenecks_computed == 0

    graph = tmp_path / "fast" / "graph.pb"
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    node = next(n for n in graph_def.node if n.name == frozen_graph.FAST_JPEG_DECODE_NODE)
    assert node.attr["value"].tensor.bool_val == [True]
    paths = tuple(os.path.join(big_folder, "green", f"green_{i}.jpg") for i in range(4))
    config = retrain.LabelImageConfig(graph=str(graph), labels=str(tmp_path / "fast" / "labels.txt"), images=paths)
    answers = retrain.classify(config)
    model = label_image.Model(config)
    pixels = np.stack([Preprocessing(24, 24, fast_jpeg_decode=True).decode_file(p) for p in paths])
    np.testing.assert_allclose(np.stack([a.scores for a in answers.images]), model.classifier.predict(pixels).scores,
                               rtol=1e-6, atol=1e-7)
    # The SavedModel's bytes signature decodes the same way.
    served = tf.saved_model.load(str(tmp_path / "fast" / "served"))
    upright = [p for p in paths if images.read_header(p)[0] == 1]
    answer = served.signatures["serving_bytes"](images=tf.constant([open(p, "rb").read() for p in upright]))
    by_path = {a.path: a.scores for a in answers.images}
    np.testing.assert_allclose(answer["scores"].numpy(), np.stack([by_path[p] for p in upright]), rtol=1e-5, atol=1e-5)
