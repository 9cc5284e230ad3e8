"""--fine_tune: the module learns what its frozen features cannot show, every output carries it,
and the head alone is kept when tuning does not help."""

import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    cache_files,
    call_command,
    make_split_safe_folder,
    quick_config,
    run_frozen_graph,
    run_tool,
)

import retrain
from retrain import testing
from retrain.data import images
from retrain.errors import UserError
from retrain.runtime import tflite_runtime

# Two classes the same in blue, apart in red and green; the blind module starts out
# seeing blue only, so its frozen features cannot tell them apart.
COLOURS = ((200, 60, 100), (60, 200, 100))
TUNING = dict(enabled=True, epochs=6, learning_rate=0.05, batch_size=8)


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    return make_split_safe_folder(tmp_path_factory.mktemp("tune"), "images", class_names=("pinkish", "greenish"),
                                  images_per_class=60, colours=COLOURS, seed=3)


@pytest.fixture(scope="module")
def blind_module(tmp_path_factory):
    return testing.build_tunable_module(str(tmp_path_factory.mktemp("modules") / "blind"),
                                        seen_channels=(False, False, True))


def tuned_config(out, folder, module, **fine_tune):
    return quick_config(out, folder, module, steps=200, testing_percentage=20, validation_percentage=20,
                        fine_tune=retrain.FineTuneConfig(**{**TUNING, **fine_tune}),
                        saved_model_dir=str(out / "served"), output_tflite=str(out / "model.tflite"))


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, colour_folder, blind_module):
    out = tmp_path_factory.mktemp("tuned")
    return out, retrain.run(tuned_config(out, colour_folder, blind_module))


def held_out_paths(result):
    return list(result.model.held_out.image_paths)


def test_fine_tuning_learns_what_frozen_features_cannot_see(tuned_run):
    _, result = tuned_run
    report = result.refinement
    assert report.head_validation_accuracy <= 0.7  # The head alone: near chance.
    assert report.kept_epoch > 0 and max(e.validation_accuracy for e in report.epochs) >= 0.9
    assert result.test_accuracy >= 0.9
    assert result.model.module.tuned and result.model.module.identity != result.model.held_out.images.source


def test_every_output_carries_the_tuned_module(tuned_run):
    out, result = tuned_run
    paths = held_out_paths(result)
    batch = np.stack([images.to_module_input(images.read_image(p), 24, 24) for p in paths])
    expected = result.model.scores(result.model.held_out.images)
    graph = run_frozen_graph(out / "graph.pb", {"Placeholder:0": batch})
    np.testing.assert_allclose(graph, expected, rtol=1e-4, atol=1e-5)
    served = tf.saved_model.load(str(out / "served")).signatures["serving_default"](image=tf.constant(batch))
    np.testing.assert_allclose(served["prediction"].numpy(), expected, rtol=1e-4, atol=1e-5)
    lite = tflite_runtime.TFLiteModel((out / "model.tflite").read_bytes()).run(batch)["scores"]
    np.testing.assert_allclose(lite, expected, rtol=1e-4, atol=1e-4)
    parity = result.tflite_parity
    assert parity.agreement == 1.0 and parity.accuracy >= 0.9 and parity.reference_accuracy == result.test_accuracy
    # label-image on the graph: the run's own test accuracy.
    answers = retrain.classify(retrain.LabelImageConfig(graph=str(out / "graph.pb"), labels=str(out / "labels.txt"),
                                                        images=tuple(paths)))
    truth = result.model.held_out.labels
    assert np.mean([a.predicted == t for a, t in zip(answers.images, truth)]) == pytest.approx(result.test_accuracy)
    # The checkpoint holds the module's tuned variables beside the head.
    names = [name for name, _ in tf.train.list_variables(str(out / "ckpt" / "c"))]
    assert any(name.startswith("module/") for name in names) and any("final_weights" in n for n in names)


def test_the_cache_stays_the_original_modules(tuned_run, tmp_path, colour_folder, blind_module):
    out, _ = tuned_run
    tuned_cache = {os.path.relpath(p, out / "bottlenecks"): open(p).read() for p in cache_files(out / "bottlenecks")}
    plain = retrain.run(quick_config(tmp_path, colour_folder, blind_module, steps=200, testing_percentage=20,
                                     validation_percentage=20))
    assert plain.bottlenecks_computed == len(tuned_cache)
    plain_cache = {os.path.relpath(p, tmp_path / "bottlenecks"): open(p).read()
                   for p in cache_files(tmp_path / "bottlenecks")}
    assert plain_cache == tuned_cache
    # Nothing the original module keeps beside the cache (its frozen graph) holds tuned weights.
    frozen = [name for _, _, names in os.walk(out / "bottlenecks" / ".retrain" / "frozen") for name in names]
    assert len(frozen) <= 1


def test_the_head_is_kept_when_tuning_does_not_help(tmp_path, colour_folder, blind_module, caplog):
    caplog.set_level("INFO", logger="absl")
    diverging = retrain.run(tuned_config(tmp_path / "tuned", colour_folder, blind_module, learning_rate=500.0,
                                         epochs=2))
    assert diverging.refinement.kept_epoch == 0
    assert "the head alone is kept" in caplog.text
    assert not diverging.model.module.tuned
    head = retrain.run(quick_config(tmp_path / "head", colour_folder, blind_module, steps=200, testing_percentage=20,
                                    validation_percentage=20))
    digest = [hashlib.sha256((tmp_path / name / "graph.pb").read_bytes()).hexdigest() for name in ("tuned", "head")]
    assert digest[0] == digest[1] and diverging.test_accuracy == head.test_accuracy


def test_seeded_fine_tuning_repeats(tmp_path, colour_folder, blind_module):
    runs = [retrain.run(quick_config(tmp_path / name, colour_folder, blind_module, steps=50, testing_percentage=20,
                                     validation_percentage=20, fine_tune=retrain.FineTuneConfig(**{**TUNING, "epochs": 2})))
            for name in ("a", "b")]
    assert [e.validation_accuracy for e in runs[0].refinement.epochs] == [
        e.validation_accuracy for e in runs[1].refinement.epochs]
    assert (tmp_path / "a" / "graph.pb").read_bytes() == (tmp_path / "b" / "graph.pb").read_bytes()


def test_distortions_are_applied_live_while_tuning(tmp_path, colour_folder, blind_module, caplog):
    caplog.set_level("INFO", logger="absl")
    config = quick_config(tmp_path, colour_folder, blind_module, steps=50, testing_percentage=20,
                          validation_percentage=20, distortions=retrain.DistortionConfig(flip_left_right=True,
                                                                                          random_crop=20),
                          fine_tune=retrain.FineTuneConfig(**TUNING))
    result = retrain.run(config)
    assert "Distorting training images at every step" not in caplog.text  # The head: cached bottlenecks.
    assert result.refinement.epochs[-1].images == len(result.model.representative_paths)
    assert result.test_accuracy >= 0.8


@pytest.mark.parametrize("which", ["no trainable variables", "TF1 Hub format", "2015 graph"])
def test_modules_that_cannot_be_tuned_are_refused_before_any_work(tmp_path, colour_folder, tiny_module, which):
    module = {
        "no trainable variables": lambda: tiny_module,
        "TF1 Hub format": lambda: testing.build_tiny_tf1_module(str(tmp_path / "tf1")),
        "2015 graph": lambda: testing.build_legacy_inception_graph(str(tmp_path / "classify_image_graph_def.pb")),
    }[which]()
    config = quick_config(tmp_path / "out", colour_folder, module, fine_tune=retrain.FineTuneConfig(enabled=True))
    with pytest.raises(UserError, match="--fine_tune: .*(no trainable variables|TF1 Hub-format|frozen graph)") as raised:
        retrain.run(config)
    assert "fine-tuned" in str(raised.value) or "fine-tune" in str(raised.value)
    assert not cache_files(tmp_path / "out" / "bottlenecks")  # Refused before any extraction.


@pytest.mark.parametrize("flag, message", [
    ("--fine_tune_epochs=0", "--fine_tune_epochs must be positive"),
    ("--fine_tune_learning_rate=-1", "--fine_tune_learning_rate must be positive"),
    ("--fine_tune_momentum=1", "--fine_tune_momentum must be in [0, 1)"),
    ("--fine_tune_label_smoothing=-0.1", "--fine_tune_label_smoothing must be in [0, 1)"),
    ("--fine_tune_weight_decay=-1", "--fine_tune_weight_decay must be 0 or positive"),
    ("--fine_tune_schedule=linear", "fine_tune_schedule"),
])
def test_bad_fine_tune_flags_are_usage_errors(flag, message):
    status, _, stderr = call_command("retrain", "--image_dir=.", "--fine_tune", flag)
    assert status == 2 and message in stderr


def test_distorted_copies_do_not_go_with_fine_tuning():
    status, _, stderr = call_command("retrain", "--image_dir=.", "--fine_tune", "--flip_left_right",
                                     "--distorted_copies=2")
    assert status == 2 and "--distorted_copies does not go with --fine_tune" in stderr


@pytest.mark.slow
def test_retrain_fine_tune_from_the_command_line(tmp_path, colour_folder, blind_module):
    out = tmp_path / "out"
    result = run_tool("retrain", f"--image_dir={colour_folder}", f"--tfhub_module={blind_module}",
                      f"--bottleneck_dir={tmp_path}/cache", f"--output_graph={out}/graph.pb",
                      f"--output_labels={out}/labels.txt", f"--summaries_dir={tmp_path}/logs",
                      f"--checkpoint_path={tmp_path}/ckpt", "--how_many_training_steps=100",
                      "--testing_percentage=20", "--validation_percentage=20", "--random_seed=1", "--fine_tune",
                      "--fine_tune_epochs=3", "--fine_tune_learning_rate=0.05", "--fine_tune_batch_size=8")
    assert result.returncode == 0, result.stderr
    assert "Fine-tuning epoch 3/3: train accuracy = " in result.stderr
    assert "Final test accuracy = " in result.stderr and "Traceback" not in result.stderr
    from tensorboard.backend.event_processing import event_accumulator

    validation = event_accumulator.EventAccumulator(str(tmp_path / "logs" / "validation"), size_guidance={"tensors": 0})
    validation.Reload()
    assert "fine_tune/accuracy" in validation.Tags()["tensors"]
    assert [event.step for event in validation.Tensors("fine_tune/accuracy")] == [1, 2, 3]
