import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_frozen_graph

from retrain import testing
from retrain.data.preprocessing import Preprocessing
from retrain.errors import UserError
from retrain.exports import checkpoint, frozen_graph, labels, saved_model
from retrain.model import TrainedModel
from retrain.module import hub
from retrain.module.frozen import FrozenModule


@pytest.fixture(scope="module")
def tf1_module(tmp_path_factory):
    return testing.build_tiny_tf1_module(str(tmp_path_factory.mktemp("tf1") / "tiny_tf1"))


def trained_model(extractor, weights, biases, final_tensor_name="final_result", **more):
    return TrainedModel(
        frozen_module=FrozenModule(extractor),
        preprocessing=Preprocessing(extractor.height, extractor.width),
        labels=[f"class {i}" for i in range(len(biases))],
        weights=np.asarray(weights, np.float32),
        biases=np.asarray(biases, np.float32),
        final_tensor_name=final_tensor_name,
        **more,
    )


def random_images(n=4, size=24):
    return np.random.default_rng(3).random((n, size, size, 3)).astype(np.float32)


def test_tf2_module_size_and_features(tiny_module):
    extractor = hub.load_feature_extractor(tiny_module)
    assert (extractor.height, extractor.width, extractor.feature_dim) == (24, 24, 32)
    assert extractor.extract(random_images()).shape == (4, 32)


def test_tf1_hub_format_module_gives_the_same_features(tiny_module, tf1_module):
    tf2 = hub.load_feature_extractor(tiny_module)
    tf1 = hub.load_feature_extractor(tf1_module)
    assert (tf1.height, tf1.width, tf1.feature_dim) == (24, 24, 32)
    np.testing.assert_allclose(tf1.extract(random_images()), tf2.extract(random_images()), atol=1e-5)


def test_a_module_with_recorded_sizes_is_loaded_when_first_called(tiny_module, tmp_path):
    first = hub.load_feature_extractor(tiny_module, facts_dir=str(tmp_path))
    assert first.loaded
    later = hub.load_feature_extractor(tiny_module, facts_dir=str(tmp_path))
    assert not later.loaded
    assert (later.height, later.width, later.feature_dim, later.fingerprint) == (
        first.height, first.width, first.feature_dim, first.fingerprint)
    np.testing.assert_array_equal(later.extract(random_images()), first.extract(random_images()))
    assert later.loaded
    # Recorded per requested size: a size the module refuses is still refused.
    with pytest.raises(UserError, match="--image_size=32"):
        hub.load_feature_extractor(tiny_module, image_size=32, facts_dir=str(tmp_path))


def test_image_size_must_agree_with_a_fixed_module(tiny_module):
    assert hub.load_feature_extractor(tiny_module, image_size=24).height == 24
    with pytest.raises(UserError, match="--image_size=32"):
        hub.load_feature_extractor(tiny_module, image_size=32)


def test_missing_module_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        hub.load_feature_extractor(str(tmp_path / "nothing"))


def test_directory_that_is_not_a_module_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="Could not load TF-Hub module"):
        hub.load_feature_extractor(str(tmp_path))


@pytest.mark.parametrize("which", ["tf2", "tf1"])
def test_frozen_graph_runs_in_tf1_and_matches_the_model(tiny_module, tf1_module, which):
    extractor = hub.load_feature_extractor(tiny_module if which == "tf2" else tf1_module)
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(32, 3)).astype(np.float32)
    biases = rng.normal(size=3).astype(np.float32)
    model = trained_model(extractor, weights, biases)
    graph_def = frozen_graph.graph_def_of(model)
    ops = {node.op for node in graph_def.node}
    assert not ops & {"VarHandleOp", "ReadVariableOp", "StatefulPartitionedCall", "PartitionedCall"}
    images = random_images()
    expected = tf.nn.softmax(extractor.extract(images) @ weights + biases).numpy()
    np.testing.assert_allclose(run_frozen_graph(graph_def, {"Placeholder:0": images}), expected, rtol=1e-5, atol=1e-6)
    # Reusing the frozen module with other weights.
    other = frozen_graph.graph_def_of(dataclasses.replace(model, weights=weights * 0, biases=biases * 0))
    np.testing.assert_allclose(run_frozen_graph(other, {"Placeholder:0": images}), 1 / 3, rtol=1e-6)


def test_frozen_graph_keeps_the_bottleneck_input_and_custom_output_name(tiny_module):
    extractor = hub.load_feature_extractor(tiny_module)
    model = trained_model(extractor, np.ones((32, 2), np.float32), np.array([0.0, 1.0], np.float32), "my_scores")
    graph_def = frozen_graph.graph_def_of(model)
    out = run_frozen_graph(graph_def, {"input/BottleneckInputPlaceholder:0": np.zeros((1, 32), np.float32)},
                           "my_scores:0")
    np.testing.assert_allclose(out, tf.nn.softmax([[0.0, 1.0]]).numpy(), rtol=1e-6)


def test_saved_model_serving_signature(tiny_module, tmp_path):
    extractor = hub.load_feature_extractor(tiny_module)
    weights = np.random.default_rng(1).normal(size=(32, 2)).astype(np.float32)
    biases = np.zeros(2, np.float32)
    path = str(tmp_path / "sm")
    os.makedirs(path)
    with open(os.path.join(path, "old.txt"), "w") as f:
        f.write("previous export")
    saved_model.write(path, trained_model(extractor, weights, biases))
    assert not os.path.exists(os.path.join(path, "old.txt"))
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    images = random_images(2)
    out = serve(image=tf.constant(images))["prediction"].numpy()
    expected = tf.nn.softmax(extractor.extract(images) @ weights + biases).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert [n for n in os.listdir(tmp_path) if n != "sm"] == []


def test_labels_file_and_checkpoint(tmp_path):
    labels.write_labels(str(tmp_path / "out" / "labels.txt"), ["b", "a c"])
    assert open(tmp_path / "out" / "labels.txt").read() == "b\na c\n"
    weights = np.arange(6, dtype=np.float32).reshape(3, 2)
    checkpoint.write_checkpoint(str(tmp_path / "ckpt" / "_retrain_checkpoint"), weights, np.ones(2, np.float32))
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt" / "_retrain_checkpoint"))
    names = {name.split("/")[0] for name in reader.get_variable_to_shape_map()}
    assert {"final_weights", "final_biases"} <= names


def test_module_without_fixed_size_uses_image_size_or_299(tmp_path):
    module = testing.build_tiny_module(str(tmp_path / "any_size"), fixed_size=False)
    assert hub.load_feature_extractor(module).height == 299
    extractor = hub.load_feature_extractor(module, image_size=32)
    assert (extractor.height, extractor.width, extractor.feature_dim) == (32, 32, 32)
    graph_def = frozen_graph.graph_def_of(trained_model(extractor, np.zeros((32, 2)), np.zeros(2)))
    placeholder = next(n for n in graph_def.node if n.name == "Placeholder")
    assert [d.size for d in placeholder.attr["shape"].shape.dim] == [-1, 32, 32, 3]
