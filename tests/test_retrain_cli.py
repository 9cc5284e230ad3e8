"""End to end through the installed `retrain` console script."""

import os

import numpy as np
import pytest
from conftest import (
    cache_files,
    call_command,
    frozen_graph_scores,
    quick_config,
    run_tool,
)

from retrain import testing
from retrain.data import image_lists


def retrain_args(tmp_path, image_dir, module, *extra):
    out = tmp_path / "out"
    return [
        f"--image_dir={image_dir}",
        f"--tfhub_module={module}",
        f"--output_graph={out}/graph.pb",
        f"--output_labels={out}/labels.txt",
        f"--bottleneck_dir={tmp_path}/bottlenecks",
        f"--summaries_dir={tmp_path}/logs",
        f"--checkpoint_path={tmp_path}/ckpt/_retrain_checkpoint",
        f"--intermediate_output_graphs_dir={tmp_path}/intermediate/",
        "--how_many_training_steps=150",
        "--learning_rate=0.1",
        "--testing_percentage=25",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_folder, tiny_module):
    tmp_path = tmp_path_factory.mktemp("retrain_e2e")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "keep.txt").write_text("the user's own file")
    (logs / "train").mkdir()
    (logs / "train" / "stale_event").write_text("old")
    result = run_tool(
        "retrain",
        *retrain_args(
            tmp_path, image_folder, tiny_module,
            "--intermediate_store_frequency=100", "--print_misclassified_test_images",
            f"--saved_model_dir={tmp_path}/saved_model", "--random_seed=7",
        ),
    )
    return tmp_path, result


def test_run_succeeds_with_original_log_lines(trained):
    _, result = trained
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert "Looking for images in 'Red-Things'" in log
    assert "Step 0: Train accuracy = " in log
    assert "Step 0: Cross entropy = " in log
    assert "Step 149: Validation accuracy = " in log and "(N=100)" in log
    assert "Final test accuracy = " in log
    assert "=== MISCLASSIFIED TEST IMAGES ===" in log
    assert "Random seed: 7" in log
    assert "Traceback" not in log
    accuracy = float(log.split("Final test accuracy = ")[1].split("%")[0])
    assert accuracy >= 90.0


def test_outputs_labels_and_tf1_classification(trained, image_folder):
    tmp_path, _ = trained
    labels = open(tmp_path / "out" / "labels.txt").read()
    assert labels == "red things\nblue ones\ngreen\n"  # Code-point order: uppercase first.
    lists = image_lists.create_image_lists(image_folder, 25, 10)
    paths, expected = [], []
    for index, (label, lists_of_label) in enumerate(lists.items()):
        for name in lists_of_label["training"][:5]:
            paths.append(os.path.join(image_folder, lists_of_label["dir"], name))
            expected.append(index)
    scores, _ = frozen_graph_scores(tmp_path / "out" / "graph.pb", paths)
    assert scores.shape == (len(paths), 3)
    assert np.mean(scores.argmax(1) == np.array(expected)) >= 0.9


def test_other_artifacts(trained):
    tmp_path, _ = trained
    assert sorted(os.listdir(tmp_path / "intermediate")) == ["intermediate_100.pb"]
    assert os.path.exists(tmp_path / "saved_model" / "saved_model.pb")
    assert os.path.exists(str(tmp_path / "ckpt" / "_retrain_checkpoint") + ".index")
    assert (tmp_path / "logs" / "keep.txt").read_text() == "the user's own file"
    assert not (tmp_path / "logs" / "train" / "stale_event").exists()
    assert os.listdir(tmp_path / "logs" / "validation")
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(str(tmp_path / "logs" / "train"))
    events.Reload()
    assert events.Tags()["graph"] is True
    cached = cache_files(tmp_path / "bottlenecks")
    assert len(cached) == 90 and all(n.endswith(".txt") for n in cached)


def test_random_labels_give_near_chance_accuracy(tmp_path, tiny_module):
    import retrain

    folder = testing.make_image_folder(str(tmp_path / "random"), images_per_class=30, seed=3, shuffle_labels=True)
    config = in_process_config(tmp_path, folder, tiny_module)
    config = retrain.RetrainConfig(**{**config.__dict__, "split": retrain.SplitConfig(testing_percentage=25),
                                      "train": retrain.TrainConfig(how_many_training_steps=150, learning_rate=0.1,
                                                                   random_seed=1)})
    result = retrain.run(config)
    assert result.test_accuracy < 0.65


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--testing_percentage=120", "--testing_percentage must be between 0 and 100"),
        ("--validation_percentage=60", "must be below 100"),
        ("--how_many_training_steps=0", "--how_many_training_steps must be positive"),
        ("--eval_step_interval=0", "--eval_step_interval must be positive"),
        ("--train_batch_size=0", "--train_batch_size must be positive or -1"),
        ("--validation_batch_size=-5", "--validation_batch_size must be positive or -1"),
        ("--learning_rate=0", "--learning_rate must be positive"),
        ("--no_such_flag=1", "Unknown command line flag 'no_such_flag'"),
        ("--logging_verbosity=LOUD", "logging_verbosity"),
        ("--tflite_io_type=uint8", "--tflite_io_type uint8 or int8 needs --tflite_quantization int8"),
        ("--tflite_quantization=int4", "tflite_quantization"),
        ("--tflite_representative_images=0", "--tflite_representative_images must be positive"),
        ("--architecture=resnet_50", "--architecture resnet_50 is not one retrain.py knew"),
        ("--unknown_threshold=often", "--unknown_threshold must be auto or a number in [0, 1]"),
        ("--unknown_target_precision=1.5", "--unknown_target_precision must be in (0, 1]"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, flag, message):
    status, _, stderr = call_command("retrain", "--image_dir=.", "--testing_percentage=50", flag)
    assert status == 2, stderr
    assert message in stderr
    assert "Traceback" not in stderr


def make_classes(root, count):
    for name in ["a", "b", "c"][:count]:
        testing.make_image_folder(str(root), class_names=(name,), images_per_class=3)
    os.makedirs(root, exist_ok=True)


def in_process_config(tmp_path, image_dir, module, **fields):
    return quick_config(tmp_path / "out", image_dir, module, steps=20, seed=None, testing_percentage=10,
                        bottleneck_dir=tmp_path / "bottlenecks", **fields)


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "Image directory '{d}' not found."),
        ("empty", "No valid folders of images found at {d}"),
        ("one", "Only one valid folder of images found at {d}  - multiple classes are needed"),
        ("unset", "Must set flag --image_dir."),
    ],
)
def test_bad_image_dir_is_a_user_error_with_the_original_wording(tmp_path, tiny_module, setup, message):
    import retrain
    from retrain.errors import UserError

    image_dir = tmp_path / "imgs"
    if setup == "empty":
        image_dir.mkdir()
    elif setup == "one":
        make_classes(image_dir, 1)
    config = in_process_config(tmp_path, image_dir if setup != "unset" else "", tiny_module)
    with pytest.raises(UserError) as raised:
        retrain.run(config)
    assert message.format(d=image_dir) in str(raised.value)


def test_a_user_error_is_one_line_and_exit_1(tmp_path, tiny_module):
    image_dir = tmp_path / "imgs"
    status, _, stderr = call_command("retrain", *retrain_args(tmp_path, image_dir, tiny_module))
    assert status == 1
    message = f"Image directory '{image_dir}' not found."
    assert message in stderr and "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("E")] == [
        line for line in stderr.splitlines() if message in line
    ]


def test_missing_module_and_unwritable_output(tmp_path, image_folder, tiny_module):
    import retrain
    from retrain.errors import UserError

    with pytest.raises(UserError, match="TF-Hub module .* not found"):
        retrain.run(in_process_config(tmp_path, image_folder, tmp_path / "no_module"))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(UserError, match="Cannot write the frozen graph to"):
        retrain.run(in_process_config(tmp_path, image_folder, tiny_module, output_graph=str(blocker / "sub" / "g.pb")))
    with pytest.raises(UserError, match="is a directory"):
        retrain.run(in_process_config(tmp_path, image_folder, tiny_module, output_labels=str(tmp_path)))
    assert not (tmp_path / "bottlenecks").exists()  # Found before any long work.


def test_small_class_with_empty_sets_still_trains(tmp_path, tiny_module, caplog):
    import retrain

    caplog.set_level("WARNING", logger="absl")
    folder = testing.make_image_folder(str(tmp_path / "imgs"), class_names=("a", "b"), images_per_class=25)
    # One image: whichever set the path's hash puts it in, the other two are empty (with two,
    # one in validation and one in testing would leave none empty: 2% of temporary paths).
    testing.make_image_folder(folder, class_names=("tiny",), images_per_class=1, seed=5)
    result = retrain.run(in_process_config(tmp_path, folder, tiny_module))
    assert result.labels == ["a", "b", "tiny"]
    assert "Label 'tiny' has no images in the category" in caplog.text


def test_help_documents_every_flag():
    status, stdout, _ = call_command("retrain", "--helpfull")
    assert status == 0
    for flag in (
        "image_dir", "output_graph", "intermediate_output_graphs_dir", "intermediate_store_frequency",
        "output_labels", "summaries_dir", "how_many_training_steps", "learning_rate", "testing_percentage",
        "validation_percentage", "eval_step_interval", "train_batch_size", "test_batch_size",
        "validation_batch_size", "print_misclassified_test_images", "bottleneck_dir", "final_tensor_name",
        "flip_left_right", "random_crop", "random_scale", "random_brightness", "tfhub_module",
        "saved_model_dir", "logging_verbosity", "checkpoint_path", "image_size", "random_seed",
        "bottleneck_batch_size", "distorted_copies", "output_tflite", "tflite_quantization", "tflite_io_type",
        "tflite_representative_images", "architecture", "model_dir", "unknown_threshold",
        "unknown_target_precision", "report_dir", "fast_jpeg_decode", "fine_tune", "fine_tune_epochs",
        "fine_tune_learning_rate", "fine_tune_schedule", "fine_tune_batch_size", "fine_tune_momentum",
        "output_onnx", "output_web", "web_runtime", "allow_unsafe_ops",
        "fine_tune_weight_decay", "fine_tune_label_smoothing",
    ):
        assert f"--{flag}" in stdout or f"--[no]{flag}" in stdout, flag


def test_python_dash_m_works():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "retrain", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--image_dir" in result.stdout


@pytest.mark.slow
def test_tools_start_without_importing_pyplot_yet_leave_it_importable():
    """Keras imports matplotlib.pyplot with TensorFlow when it is installed: a second per start."""
    import subprocess
    import sys

    pytest.importorskip("matplotlib")
    code = (
        "import sys\n"
        "from retrain.commands import cli\n"
        "cli.import_tensorflow_quietly(verbose=False)\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
        "import matplotlib.pyplot\n"
        "print(callable(matplotlib.pyplot.figure))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "True"], result.stderr[-2000:]


def test_image_size_for_a_module_without_a_fixed_size(tmp_path, image_folder, caplog):
    import retrain

    module = testing.build_tiny_module(str(tmp_path / "any_size"), fixed_size=False)
    caplog.set_level("INFO", logger="absl")  # After TensorFlow's first import, which sets absl's level.
    config = in_process_config(tmp_path, image_folder, module)
    retrain.run(retrain.RetrainConfig(**{**config.__dict__, "image_size": 32}))
    assert "with image size 32x32" in caplog.text
    scores, _ = frozen_graph_scores(tmp_path / "out" / "graph.pb", [os.path.join(image_folder, "green", "green_000.jpg")],
                                    size=32)
    assert scores.shape == (1, 3)
    status, _, stderr = call_command("retrain", *retrain_args(tmp_path, image_folder, module, "--image_size=0"))
    assert status == 2 and "--image_size must be positive" in stderr


@pytest.mark.slow
def test_the_readme_demo_runs_end_to_end(tmp_path):
    """The README's first command: scripts/demo.sh, on generated images and a tiny module."""
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "demo.sh")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(["bash", script, str(tmp_path / "demo")], capture_output=True, text=True, env=env,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answering 'unknown' when unsure" in done.stdout and "meets --min_accuracy 0.9" in done.stderr
    assert (tmp_path / "demo" / "model.tflite").is_file()
