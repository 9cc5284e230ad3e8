"""The first hour: the six frictions a new user met, replayed; each now reads as it should."""

import json
import os
import urllib.error

import pytest
from conftest import call_command, quick_config

import retrain
from retrain import testing
from retrain.data import image_lists
from retrain.errors import UserError


@pytest.fixture(scope="module")
def pre_split(tmp_path_factory):
    """A downloaded data set's layout: train/ and test/, each with one folder per class."""
    root = tmp_path_factory.mktemp("downloaded") / "dataset"
    testing.make_image_folder(str(root / "train"), class_names=("cats", "dogs"), images_per_class=40, seed=1)
    testing.make_image_folder(str(root / "test"), class_names=("cats", "dogs"), images_per_class=8, seed=2)
    return root


def test_split_folders_are_used_as_given_not_trained_as_classes(pre_split, tmp_path, tiny_module, caplog):
    caplog.set_level("INFO", logger="absl")
    result = retrain.run(quick_config(tmp_path / "out", pre_split, tiny_module))
    assert result.labels == ["cats", "dogs"]  # Not "test" and "train".
    sets = result.model.training_split
    assert sets["layout"] == "split folders" and sets["folders"]["testing"] == ["test"]
    assert result.test_count == 16 and all("/test/" in path for path in result.model.held_out.image_paths)
    assert any(m.startswith(f"Using the split folders of {pre_split}: training from train/") and
               "validation carved from the training folders" in m for m in caplog.messages)
    lists = image_lists.create_image_lists(str(pre_split), 25, 10)
    assert sum(len(s["validation"]) for s in lists.values()) > 0
    assert all(not name.startswith("test/") for s in lists.values() for name in s["validation"] + s["training"])
    again = retrain.run(quick_config(tmp_path / "out", pre_split, tiny_module))
    assert again.bottlenecks_computed == 0 and again.bottlenecks_reused == 96


def test_a_class_missing_from_a_split_is_warned_about_and_a_mix_refused(tmp_path, caplog):
    root = tmp_path / "data"
    testing.make_image_folder(str(root / "Train"), class_names=("cats", "dogs", "birds"), images_per_class=5)
    testing.make_image_folder(str(root / "VAL"), class_names=("cats", "dogs"), images_per_class=2)
    caplog.set_level("WARNING", logger="absl")
    lists = image_lists.create_image_lists(str(root), 10, 10)
    assert list(lists) == ["birds", "cats", "dogs"] and not lists["birds"]["validation"]
    assert "Class 'birds' has no images in VAL/: it has no validation images." in caplog.messages
    testing.make_image_folder(str(root), class_names=("fish",), images_per_class=2)
    with pytest.raises(UserError, match="holds split folders \\(Train, VAL\\) and class folders \\(fish\\) side by side"):
        image_lists.create_image_lists(str(root), 10, 10)


def test_a_class_folder_given_as_image_dir_shows_the_layout(tmp_path, caplog):
    folder = testing.make_image_folder(str(tmp_path / "fruits"), class_names=("apples",), images_per_class=7)
    apples = os.path.join(folder, "apples")
    with pytest.raises(UserError) as raised:
        image_lists.load(apples, retrain.SplitConfig())
    message = str(raised.value)
    assert message.startswith(f"No valid folders of images found at {apples}: it holds 7 images but no class folders")
    assert f"Give the folder above it, {folder}" in message
    assert os.path.join(folder, "roses", "photo1.jpg") in message and len(message.splitlines()) == 3
    caplog.set_level("WARNING", logger="absl")
    with pytest.raises(UserError, match="Only one valid folder"):
        image_lists.load(folder, retrain.SplitConfig())
    assert "WARNING: Folder has less than 20 images, which may cause issues. ('apples' has 7.)" in caplog.messages


def test_module_messages_say_what_to_do(tmp_path, tiny_module, monkeypatch, image_folder, caplog):
    import tensorflow_hub

    from retrain.module import hub

    def unreachable(handle):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(tensorflow_hub, "resolve", unreachable)
    with pytest.raises(UserError) as raised:
        hub.load_feature_extractor("https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5")
    message = str(raised.value)
    assert "cannot reach tfhub.dev" in message and "download the module" in message and "--tfhub_module /path" in message

    def forbidden(handle):
        raise urllib.error.HTTPError(handle, 403, "Forbidden", {}, None)

    monkeypatch.setattr(tensorflow_hub, "resolve", forbidden)
    with pytest.raises(UserError) as raised:
        hub.load_feature_extractor("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5")
    assert "answered 403 Forbidden" in str(raised.value) and "https://www.kaggle.com/models" in str(raised.value)
    monkeypatch.undo()
    caplog.set_level("INFO", logger="absl")
    extractor = hub.load_feature_extractor(os.path.join(tiny_module, "saved_model.pb"))
    assert extractor.feature_dim == 32 and "is a file of a module: using its folder" in caplog.text


def test_the_run_ends_with_where_everything_went_even_at_warn(tmp_path, image_folder, tiny_module):
    args = [f"--image_dir={image_folder}", f"--tfhub_module={tiny_module}", f"--bottleneck_dir={tmp_path}/cache",
            f"--output_graph={tmp_path}/out/graph.pb", f"--output_labels={tmp_path}/out/labels.txt",
            f"--summaries_dir={tmp_path}/logs", f"--checkpoint_path={tmp_path}/ckpt/c",
            "--how_many_training_steps=50", "--logging_verbosity=WARN", "--random_seed=1"]
    status, stdout, stderr = call_command("retrain", *args)
    assert status == 0, stderr
    assert stdout.startswith("retrain: done. Written:")
    for name, where in (("frozen graph", f"{tmp_path}/out/graph.pb"), ("labels file", f"{tmp_path}/out/labels.txt"),
                        ("checkpoint", f"{tmp_path}/ckpt/c"), ("TensorBoard summaries", f"{tmp_path}/logs"),
                        ("bottleneck cache", f"{tmp_path}/cache   (90 computed, 0 reused)")):
        assert any(line.split() and line.strip().startswith(name) and where in line for line in stdout.splitlines()), name
    assert "Test accuracy: " in stdout and "95% interval" in stdout
    next_line = stdout.strip().splitlines()[-1]
    assert next_line.startswith(f"Next: label-image --graph {tmp_path}/out/graph.pb --labels ")
    status, stdout, _ = call_command("retrain", *args)
    assert "(0 computed, 90 reused)" in stdout


def test_a_warm_cache_does_not_claim_to_create_files(tmp_path, image_folder, tiny_module, caplog):
    retrain.run(quick_config(tmp_path, image_folder, tiny_module, steps=10))
    caplog.set_level("INFO", logger="absl")
    retrain.run(quick_config(tmp_path, image_folder, tiny_module, steps=10))
    assert "All 90 bottlenecks were found in the cache; none computed." in caplog.messages
    assert not any("bottleneck files created" in m for m in caplog.messages)


def test_small_numbers_say_how_small(tmp_path, image_folder, tiny_module, caplog):
    caplog.set_level("INFO", logger="absl")
    result = retrain.run(quick_config(tmp_path, image_folder, tiny_module, steps=20))
    validation = len(result.model.training_split) and sum(
        1 for _ in image_lists.create_image_lists(image_folder, 25, 10).paths("validation"))
    assert f"Each validation accuracy below is on 100 draws with replacement from {validation} validation images." \
        in caplog.messages
    low, high = result.test_interval
    assert low < result.test_accuracy <= high and 0 < high - low < 0.5
    assert any(m.startswith("95% interval of the test accuracy:") and f"{result.test_count} test images" in m
               for m in caplog.messages)
    assert result.calibration is None and result.model.calibration is None
    assert any(f"Only {validation} validation images: too few to fit a temperature" in m and "at least 50" in m
               for m in caplog.messages)


def test_label_image_over_the_training_folder_says_what_it_trained_on(tmp_path, image_folder, tiny_module):
    result = retrain.run(quick_config(tmp_path, image_folder, tiny_module, steps=100))
    evaluation = retrain.evaluate(retrain.LabelImageConfig(graph=str(tmp_path / "graph.pb"),
                                                           labels=str(tmp_path / "labels.txt"), image_dir=image_folder))
    held = evaluation.held_out
    lists = image_lists.create_image_lists(image_folder, 25, 10)
    assert held.trained_on == len(lists.paths("training")) and held.total == 90
    assert held.testing_count == result.test_count and held.testing_accuracy == result.test_accuracy
    assert f"The model was trained on {held.trained_on} of these 90 images" in evaluation.held_out_note
    status, stdout, stderr = call_command("label-image", f"--graph={tmp_path}/graph.pb",
                                          f"--labels={tmp_path}/labels.txt", f"--image_dir={image_folder}",
                                          "--evaluate", "--output_format=json")
    assert json.loads(stdout)["held_out"]["trained_on"] == held.trained_on
    assert "counts them. Held out:" in stderr
    # Any other folder: its split does not matter (a split-safe one of 5 images a class is rare).
    elsewhere = testing.make_image_folder(str(tmp_path / "holdout"), class_names=("Red-Things", "green"),
                                          images_per_class=5)
    other = retrain.evaluate(retrain.LabelImageConfig(graph=str(tmp_path / "graph.pb"),
                                                      labels=str(tmp_path / "labels.txt"), image_dir=elsewhere))
    assert other.held_out is None and "not on this folder" in other.held_out_note


def test_label_image_takes_the_labels_the_model_carries(trained_model, image_folder):
    image = os.path.join(image_folder, "green", "green_000.jpg")
    expected = None
    for graph in (trained_model["saved_model"], trained_model["tflite"]):
        status, stdout, stderr = call_command("label-image", f"--graph={graph}", f"--image={image}")
        assert status == 0, stderr
        assert stdout.splitlines()[0].startswith("green ")
        expected = expected or [line.split()[0] for line in stdout.splitlines()]
        assert [line.split()[0] for line in stdout.splitlines()] == expected
    status, _, stderr = call_command("label-image", f"--graph={trained_model['graph']}", f"--image={image}")
    assert status == 2 and "--labels is required with a frozen graph" in stderr


def test_the_interval_is_wilsons():
    from retrain.evaluation.metrics import wilson_interval

    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(38, 38) == (pytest.approx(0.9082, abs=1e-4), 1.0)
    assert wilson_interval(0, 4) == (0.0, pytest.approx(0.4899, abs=1e-4))
