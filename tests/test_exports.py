"""Every deployable format, checked against the frozen graph; atomic writes and permissions."""

import base64
import dataclasses
import os
import stat

import numpy as np
import pytest
import tensorflow as tf
from conftest import frozen_graph_scores, quick_config

import retrain
from retrain import exports, inference
from retrain.data import images, storage
from retrain.errors import UserError
from retrain.runtime import tflite_runtime


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory, image_folder, tiny_module):
    out = tmp_path_factory.mktemp("int8")
    config = quick_config(out, image_folder, tiny_module, output_tflite=str(out / "model.tflite"),
                        tflite_quantization="int8", saved_model_dir=str(out / "served"))
    return out, retrain.run(config)


def held_out_paths(image_folder):
    lists = retrain.create_image_lists(image_folder, 25, 10)
    return [lists.image_path(label, name) for label in lists for name in lists[label]["testing"]]


def test_int8_tflite_agrees_with_the_frozen_graph(int8_run, image_folder):
    out, result = int8_run
    parity = result.tflite_parity
    assert parity.quantization == "int8" and parity.category == "testing"
    assert parity.count == len(held_out_paths(image_folder)) > 10
    assert parity.agreement >= 0.97
    assert abs(parity.accuracy - parity.reference_accuracy) <= 0.05
    # Measured again here, independently: the interpreter against a TF1 session of the graph.
    paths = held_out_paths(image_folder)
    expected, batch = frozen_graph_scores(out / "graph.pb", paths)
    model = tflite_runtime.TFLiteModel(open(out / "model.tflite", "rb").read())
    got = model.run(batch)["scores"]
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.97
    assert np.abs(got - expected).max() < 0.1
    assert model.metadata["labels"] == result.labels and model.metadata["quantization"] == "int8"


def test_int8_model_is_smaller_than_float(tmp_path, int8_run, image_folder, tiny_module):
    out, _ = int8_run
    result = retrain.run(quick_config(tmp_path, image_folder, tiny_module, output_tflite=str(tmp_path / "f.tflite")))
    assert result.tflite_parity.agreement == 1.0 and result.tflite_parity.max_score_difference < 1e-4
    # The tiny module has few weights; the int8 file still carries them in a quarter of the bytes.
    assert os.path.getsize(out / "model.tflite") < os.path.getsize(tmp_path / "f.tflite")


def test_label_image_on_tflite_equals_the_interpreter(int8_run, image_folder):
    out, result = int8_run
    paths = held_out_paths(image_folder)[:6]
    run = retrain.classify(retrain.LabelImageConfig(graph=str(out / "model.tflite"), labels=str(out / "labels.txt"),
                                                    images=tuple(paths)))
    model = tflite_runtime.TFLiteModel(open(out / "model.tflite", "rb").read())
    batch = np.stack([images.to_graph_input(images.read_image(p), 24, 24, 0.0, 255.0) for p in paths])
    direct = model.run(batch)["scores"]
    np.testing.assert_allclose(np.stack([r.scores for r in run.images]), direct, rtol=1e-6, atol=1e-6)


def test_uint8_io_takes_quantized_pixels(tmp_path, image_folder, tiny_module):
    config = quick_config(tmp_path, image_folder, tiny_module, output_tflite=str(tmp_path / "u8.tflite"),
                        tflite_quantization="int8", tflite_io_type="uint8")
    result = retrain.run(config)
    assert result.tflite_parity.agreement >= 0.97
    model = tflite_runtime.TFLiteModel(open(tmp_path / "u8.tflite", "rb").read())
    assert model.input_dtype == np.uint8
    evaluation = retrain.evaluate(retrain.LabelImageConfig(graph=str(tmp_path / "u8.tflite"),
                                                           labels=str(tmp_path / "labels.txt"), image_dir=image_folder))
    assert evaluation.evaluation.accuracy >= 0.9


def test_serving_bytes_equals_label_image(int8_run, image_folder):
    out, result = int8_run
    paths = held_out_paths(image_folder)[:5]
    loaded = tf.saved_model.load(str(out / "served"))
    serve = loaded.signatures["serving_bytes"]
    answer = serve(images=tf.constant([open(p, "rb").read() for p in paths]))
    run = retrain.classify(retrain.LabelImageConfig(graph=str(out / "graph.pb"), labels=str(out / "labels.txt"),
                                                    images=tuple(paths)))
    expected = np.stack([r.scores for r in run.images])
    np.testing.assert_allclose(answer["scores"].numpy(), expected, rtol=1e-5, atol=1e-5)
    top = [[label.decode() for label in row] for row in answer["top_labels"].numpy()]
    assert [row[0] for row in top] == [r.ranked(result.labels, 1)[0][0] for r in run.images]
    assert len(top[0]) == 3  # min(5, classes)
    np.testing.assert_allclose(answer["top_scores"].numpy()[:, 0], expected.max(1), rtol=1e-5, atol=1e-5)
    # The default signature is retrain.py's: pixels in, 'prediction' out.
    default = loaded.signatures["serving_default"]
    assert list(default.structured_outputs) == ["prediction"]
    assert open(out / "served" / "assets" / "labels.txt").read() == "\n".join(result.labels) + "\n"
    # label-image through the bytes signature gives the same scores again.
    via_bytes = retrain.classify(retrain.LabelImageConfig(graph=str(out / "served"), signature="serving_bytes",
                                                          labels=str(out / "labels.txt"), images=tuple(paths)))
    np.testing.assert_allclose(np.stack([r.scores for r in via_bytes.images]), expected, rtol=1e-5, atol=1e-5)


def test_serving_bytes_reads_every_format_and_base64_round_trips(int8_run, tmp_path):
    from PIL import Image

    out, _ = int8_run
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :, 1] = 180  # Green.
    files = []
    for fmt in ("JPEG", "PNG", "GIF", "BMP"):
        path = tmp_path / f"x.{fmt.lower()}"
        Image.fromarray(pixels).save(path, fmt)
        files.append(base64.b64decode(base64.b64encode(path.read_bytes())))  # As a REST client sends them.
    loaded = tf.saved_model.load(str(out / "served"))
    answer = loaded.signatures["serving_bytes"](images=tf.constant(files))
    assert [row[0].decode() for row in answer["top_labels"].numpy()] == ["green"] * 4


def test_failed_conversion_leaves_no_partial_file_and_keeps_the_earlier_one(tmp_path, int8_run, tiny_module, monkeypatch):
    out, _ = int8_run
    target = tmp_path / "model.tflite"
    target.write_bytes(b"the earlier model")

    def fail(self):
        raise RuntimeError("converter exploded\nwith a long trace")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "convert", fail)
    model = _model_from_run(out, tiny_module)
    options = retrain.OutputConfig(output_tflite=str(target))
    with pytest.raises(UserError, match="TFLite conversion \\(float\\) failed: converter exploded"):
        exports.write_outputs(dataclasses.replace(options, output_graph="", output_labels="", checkpoint_path=""), model)
    assert target.read_bytes() == b"the earlier model"
    assert os.listdir(tmp_path) == ["model.tflite"]


def _model_from_run(out, module_dir):
    """A TrainedModel rebuilt from a run's checkpoint (the layer) and the tiny module."""
    from retrain.data.preprocessing import Preprocessing
    from retrain.model import TrainedModel
    from retrain.module import hub
    from retrain.module.frozen import FrozenModule

    reader = tf.train.load_checkpoint(str(out / "ckpt" / "c"))
    names = reader.get_variable_to_shape_map()
    weights = reader.get_tensor(next(n for n in names if n.startswith("final_weights")))
    biases = reader.get_tensor(next(n for n in names if n.startswith("final_biases")))
    extractor = hub.load_feature_extractor(module_dir)
    labels = open(out / "labels.txt").read().split("\n")[:-1]
    return TrainedModel(FrozenModule(extractor), Preprocessing(24, 24), labels, weights, biases)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_and_folders_follow_the_umask(tmp_path, image_folder, tiny_module, umask):
    previous = os.umask(umask)
    try:
        retrain.run(quick_config(tmp_path, image_folder, tiny_module, saved_model_dir=str(tmp_path / "served"),
                               output_tflite=str(tmp_path / "m.tflite")))
    finally:
        os.umask(previous)
    expected_file, expected_dir = 0o666 & ~umask, 0o777 & ~umask
    checked = 0
    for root, dirs, files in os.walk(tmp_path):
        for name in files:
            if name.startswith("c.") or name == "checkpoint":
                continue  # Written by TensorFlow's checkpoint code.
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == expected_file, os.path.join(root, name)
            checked += 1
        for name in dirs:
            if os.path.join(root, name).startswith(str(tmp_path / "served")):
                continue  # Inside the SavedModel, TensorFlow makes the folders.
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == expected_dir, os.path.join(root, name)
    assert checked > 90  # Cache entries, graph, labels, model files.
    assert stat.S_IMODE(os.stat(tmp_path / "served").st_mode) == expected_dir


def test_outputs_are_one_table_that_checks_before_the_long_work(tmp_path):
    written = [output.field for output in exports.OUTPUTS if output.writer]
    assert written == ["checkpoint_path", "output_graph", "output_labels", "saved_model_dir", "output_tflite",
                       "output_onnx", "output_web"]
    # Written during training, their locations checked up front all the same.
    assert [output.field for output in exports.OUTPUTS if not output.writer] == [
        "intermediate_output_graphs_dir", "summaries_dir"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for field in ("output_graph", "output_tflite", "saved_model_dir", "output_labels"):
        options = dataclasses.replace(retrain.OutputConfig(checkpoint_path=str(tmp_path / "c"), summaries_dir="",
                                                           output_graph=str(tmp_path / "g.pb"),
                                                           output_labels=str(tmp_path / "l.txt")),
                                      **{field: str(blocker / "sub" / "x")})
        with pytest.raises(UserError, match="Cannot write the"):
            exports.check_locations(options)
    with pytest.raises(UserError, match="is a directory; give a file name for --output_tflite"):
        exports.check_locations(retrain.OutputConfig(output_tflite=str(tmp_path), summaries_dir=""))


def test_storage_permissions_and_atomic_text(tmp_path):
    previous = os.umask(0o027)
    try:
        storage.write_text(str(tmp_path / "a" / "b.txt"), "hello")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b.txt").st_mode) == 0o640
    assert os.listdir(tmp_path / "a") == ["b.txt"]


def test_label_image_finds_the_format_by_content(int8_run, tmp_path):
    out, _ = int8_run
    renamed = tmp_path / "model.bin"
    renamed.write_bytes((out / "model.tflite").read_bytes())
    assert isinstance(inference.load_classifier(str(renamed)), inference.TFLiteClassifier)
    assert isinstance(inference.load_classifier(str(out / "graph.pb")), inference.FrozenGraphClassifier)
    assert isinstance(inference.load_classifier(str(out / "served")), inference.SavedModelClassifier)
    with pytest.raises(UserError, match="no serving_nothing signature"):
        inference.load_classifier(str(out / "served"), signature="serving_nothing")
    with pytest.raises(UserError, match="not a TensorFlow GraphDef"):
        (tmp_path / "junk.pb").write_bytes(b"\x00\x01 not a graph")
        inference.load_classifier(str(tmp_path / "junk.pb"))
