"""label-image on graphs of the older kinds (reference sections 4 and 8)."""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import call_command, run_frozen_graph

from retrain import inference, testing
from retrain.evaluation import metrics

v1 = tf.compat.v1


def write_graph(path, build):
    graph = tf.Graph()
    with graph.as_default():
        build()
        graph_def = graph.as_graph_def()
    with open(path, "wb") as f:
        f.write(graph_def.SerializeToString())
    return graph_def


def colour_scores(pixels):
    """Softmax over the mean red, green, blue of float [1, h, w, 3] pixels."""
    return tf.nn.softmax(tf.reduce_mean(pixels, axis=[1, 2]) * 10.0, name="final_result")


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("old_graphs")
    return testing.make_image_folder(str(root / "imgs"), class_names=("red", "green"), images_per_class=2)


def test_old_inception_style_graph_fed_jpeg_bytes(tmp_path, images_dir):
    def build():
        contents = v1.placeholder(tf.string, [], name="DecodeJpeg/contents")
        decoded = tf.cast(tf.io.decode_jpeg(contents, channels=3), tf.float32)[tf.newaxis]
        colour_scores((v1.image.resize_bilinear(decoded, [24, 24]) - 128.0) / 128.0)

    graph_def = write_graph(str(tmp_path / "old.pb"), build)
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    image = os.path.join(images_dir, "red", "red_000.jpg")
    status, stdout, stderr = call_command("label-image", f"--graph={tmp_path}/old.pb",
                                          f"--labels={tmp_path}/labels.txt", f"--image={image}",
                                          "--input_layer=DecodeJpeg/contents")
    assert status == 0, stderr
    expected = run_frozen_graph(graph_def, {"DecodeJpeg/contents:0": open(image, "rb").read()})[0]
    assert stdout.splitlines()[0] == "red " + str(expected.max())


def test_fixed_batch_mul_graph_with_mean_and_std(tmp_path, images_dir):
    def build():
        colour_scores(v1.placeholder(tf.float32, [1, 20, 20, 3], name="Mul"))

    write_graph(str(tmp_path / "mul.pb"), build)
    classifier = inference.load_classifier(str(tmp_path / "mul.pb"), input_layer="Mul")
    assert (classifier.height, classifier.width, classifier.class_count) == (20, 20, 3)
    paths = [os.path.join(images_dir, c, f"{c}_00{i}.jpg") for c in ("red", "green") for i in range(2)]
    results = list(inference.classify_files(classifier, paths, mean=128, std=128, batch_size=3, show_progress=False))
    assert [r[0] for r in results] == paths
    assert [int(r[1].scores.argmax()) for r in results] == [0, 0, 1, 1]


def test_find_images_walks_folders_and_reports_missing(tmp_path, images_dir):
    found, missing = inference.find_images([images_dir, str(tmp_path / "nope.jpg")])
    assert len(found) == 4 and found == sorted(found)
    assert missing == [(str(tmp_path / "nope.jpg"), f"{tmp_path / 'nope.jpg'} not found")]


def test_evaluation_metrics_by_hand():
    report = metrics.evaluate(
        true=np.array([0, 0, 1, 1, 1]), predicted=np.array([0, 1, 1, 1, 0]),
        top_scores=np.array([0.9, 0.6, 0.8, 0.7, 0.5]), labels=["a", "b"],
    )
    assert report.accuracy == pytest.approx(0.6)
    assert report.confusion_matrix == [[1, 1], [1, 2]]
    assert report.per_label["b"].precision == pytest.approx(2 / 3)
    assert report.per_label["b"].recall == pytest.approx(2 / 3)
    assert report.per_label["a"].mean_score_misses == pytest.approx(0.6)
    assert report.suggested_threshold == pytest.approx(((0.9 + 0.8 + 0.7) / 3 + (0.6 + 0.5) / 2) / 2)
    perfect = metrics.evaluate(np.array([0, 1]), np.array([0, 1]), np.array([0.9, 0.8]), ["a", "b"])
    assert perfect.suggested_threshold is None and perfect.accuracy == 1.0


def test_input_size_flags_for_graphs_without_a_fixed_size(tmp_path, images_dir):
    def build():
        colour_scores(v1.placeholder(tf.float32, [None, None, None, 3], name="Placeholder"))

    write_graph(str(tmp_path / "any.pb"), build)
    assert inference.load_classifier(str(tmp_path / "any.pb")).height == 299
    classifier = inference.load_classifier(str(tmp_path / "any.pb"), height=10, width=12)
    assert (classifier.height, classifier.width) == (10, 12)
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    image = os.path.join(images_dir, "green", "green_000.jpg")
    status, stdout, stderr = call_command("label-image", f"--graph={tmp_path}/any.pb",
                                          f"--labels={tmp_path}/labels.txt", f"--image={image}", "--input_height=10",
                                          "--input_width=12", "--batch_size=1")
    assert status == 0, stderr
    assert stdout.splitlines()[0].startswith("green ")


def test_large_constants_run_from_variables_with_identical_scores(tmp_path):
    from retrain.runtime import graph_weights

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(192, 200)).astype(np.float32)  # 150 KB: moved to a variable.
    bias = rng.normal(size=200).astype(np.float32)  # 800 bytes: stays a constant.

    def build():
        pixels = v1.placeholder(tf.float32, [None, 8, 8, 3], name="Placeholder")
        gate = tf.identity(pixels, name="gate")
        with tf.control_dependencies([gate]):
            kernel = tf.constant(weights, name="kernel")
        logits = tf.matmul(tf.reshape(pixels, [-1, 192]), kernel) + tf.constant(bias, name="bias")
        tf.nn.softmax(logits, name="final_result")
        tf.constant(np.arange(20_000, dtype=np.int32), name="table")  # 80 KB of integers: stays.

    graph_def = write_graph(str(tmp_path / "big.pb"), build)
    light, values = graph_weights.split_weights(graph_def)
    assert set(values) == {"kernel"} and np.array_equal(values["kernel"], weights)
    ops = {node.name: node.op for node in light.node}
    assert ops["kernel"] == "ReadVariableOp" and ops["bias"] == ops["table"] == "Const"
    assert light.ByteSize() < 100_000 < graph_def.ByteSize()

    batch = rng.uniform(size=(5, 8, 8, 3)).astype(np.float32)
    classifier = inference.FrozenGraphClassifier(str(tmp_path / "big.pb"), graph_def.SerializeToString(),
                                                 "Placeholder", "final_result")
    # The graph as it is, with its constants, in a session configured as label-image's.
    for feed in (batch, batch[:1]):  # Batches of 1 take other kernels (matrix-vector).
        expected = run_frozen_graph(graph_def, {"Placeholder:0": feed}, session_config=inference._session_config())
        np.testing.assert_array_equal(classifier.scores(feed), expected)


def test_a_damaged_large_constant_is_one_clear_error(tmp_path):
    from retrain.errors import UserError

    def build():
        pixels = v1.placeholder(tf.float32, [None, 4], name="Placeholder")
        tf.nn.softmax(tf.matmul(pixels, tf.constant(np.ones((4, 5000), np.float32), name="kernel")), name="final_result")

    graph_def = write_graph(str(tmp_path / "ok.pb"), build)
    kernel = next(node for node in graph_def.node if node.name == "kernel")
    kernel.attr["value"].tensor.tensor_content = kernel.attr["value"].tensor.tensor_content[:-8]
    with pytest.raises(UserError, match=r"Cannot import graph .*damaged.pb: constant kernel is damaged"):
        inference.FrozenGraphClassifier(str(tmp_path / "damaged.pb"), graph_def.SerializeToString(),
                                        "Placeholder", "final_result")
