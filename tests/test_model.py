"""The trained model is one object: it scores cached bottlenecks only when its own module made them."""

import dataclasses
import os

import numpy as np
import pytest
from conftest import quick_config

import retrain
from retrain import testing
from retrain.config import DistortionConfig
from retrain.evaluation import held_out
from retrain.module import hub
from retrain.module.frozen import FrozenModule
from retrain.training import modes


@pytest.fixture(scope="module")
def run_result(tmp_path_factory, image_folder, tiny_module):
    return retrain.run(quick_config(tmp_path_factory.mktemp("model"), image_folder, tiny_module))


def test_cached_bottlenecks_and_the_images_give_the_same_logits(run_result):
    model = run_result.model
    images = model.held_out.images
    assert images.source == model.module.identity and len(images) > 10
    from_cache = model.logits(images)
    from_images = model.logits(dataclasses.replace(images, source="made by another module"))
    np.testing.assert_allclose(from_images, from_cache, rtol=1e-4, atol=1e-5)


def test_a_model_with_another_module_never_uses_the_cached_bottlenecks(run_result, tmp_path):
    model = run_result.model
    images = model.held_out.images
    other = hub.load_feature_extractor(testing.build_tiny_module(str(tmp_path / "other"), seed=9))
    assert other.identity != model.module.identity
    swapped = dataclasses.replace(model, frozen_module=FrozenModule(other))
    logits = swapped.logits(images)
    assert not np.allclose(logits, model.logits(images), atol=1e-3)
    own_features = np.asarray(other.extract(np.stack([
        model.preprocessing.decode_file(path) for path in images.image_paths])))
    np.testing.assert_allclose(logits, swapped.logits_of_bottlenecks(own_features), rtol=1e-5, atol=1e-6)
    # The final test is scored through the model it is given.
    rows = np.arange(len(images))
    assert held_out.final_test(swapped, images, rows).accuracy == pytest.approx(np.mean(logits.argmax(1) == images.labels))


def test_the_runs_test_accuracy_is_its_models_on_the_test_images(run_result):
    model = run_result.model
    assert model.held_out.category == "testing"  # --test_batch_size -1: every test image, once.
    test = held_out.final_test(model, model.held_out.images, np.arange(len(model.held_out.images)))
    assert (test.accuracy, test.count) == (run_result.test_accuracy, run_result.test_count)
    assert test.misclassified == run_result.misclassified


@pytest.mark.parametrize("distortions, mode, cached", [
    (DistortionConfig(), "cached", "plain"),
    (DistortionConfig(flip_left_right=True), "live_distortions", "nothing"),
    (DistortionConfig(random_crop=10, distorted_copies=3), "distorted_copies", "3 copies"),
])
def test_the_mode_is_chosen_once_and_says_what_the_cache_keeps(distortions, mode, cached):
    config = retrain.RetrainConfig(image_dir="x", distortions=distortions)
    assert modes.mode_name(config) == mode
    training = modes.for_config(config).training_images(config)
    described = "nothing" if not training.cached else (f"{training.copies} copies" if training.copies else "plain")
    assert described == cached


def test_every_mode_in_the_table_has_both_functions():
    import importlib

    for name, module in modes.MODES.items():
        imported = importlib.import_module(module)
        assert callable(imported.training_images) and callable(imported.training_data), name
        assert os.path.basename(imported.__file__) == f"{name}.py"
