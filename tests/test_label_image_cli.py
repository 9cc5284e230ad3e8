"""label-image's output: end to end through the installed console script, and its renderer in-process.

Each subprocess imports TensorFlow (seconds); the renderer (classify_and_print, what
the command runs after parsing its flags) gives the same output in-process, so only
what needs the real command (exit codes, flag parsing, one-line errors) runs it.
"""

import csv
import dataclasses
import io
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import call_command, run_tool

from retrain import config as config_lib
from retrain import testing
from retrain.commands import label_image_main


def label_image(model, *args, graph=None):
    return run_tool("label-image", f"--graph={graph or model['graph']}", f"--labels={model['labels']}", *args)


def render(capsys, model, graph=None, **config):
    """(exit status, stdout, stderr) of label-image's renderer for a LabelImageConfig."""
    status = label_image_main.classify_and_print(
        config_lib.LabelImageConfig(graph=graph or model["graph"], labels=model["labels"], **config)
    )
    out, err = capsys.readouterr()
    return status, out, err


def tf1_label_image_scores(graph_path, image_path, height=24, width=24, mean=0.0, std=255.0):
    """What TensorFlow's label_image.py computes, written out in plain TF1 ops."""
    graph = tf.Graph()
    with graph.as_default():
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(open(graph_path, "rb").read())
        tf.compat.v1.import_graph_def(graph_def, name="import")
        contents = tf.io.read_file(image_path)
        decoded = tf.io.decode_jpeg(contents, channels=3)
        resized = tf.compat.v1.image.resize_bilinear(tf.expand_dims(tf.cast(decoded, tf.float32), 0), [height, width])
        normalized = (resized - mean) / std
        with tf.compat.v1.Session(graph=graph) as session:
            pixels = session.run(normalized)
            return session.run("import/final_result:0", {"import/Placeholder:0": pixels})[0]


def some_image(image_folder, cls="green", index=0):
    return os.path.join(image_folder, cls, f"{cls}_{index:03d}.jpg")


def test_single_image_equals_plain_tf1_run(trained_model, image_folder):
    image = some_image(image_folder)
    result = label_image(trained_model, f"--image={image}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    labels = open(trained_model["labels"]).read().split("\n")[:-1]
    expected = tf1_label_image_scores(trained_model["graph"], image)
    order = expected.argsort()[::-1]
    assert [line.rsplit(" ", 1)[0] for line in lines] == [labels[i] for i in order]
    np.testing.assert_allclose([float(line.rsplit(" ", 1)[1]) for line in lines], expected[order], rtol=1e-5)
    assert lines[0].startswith("green ")


def test_saved_model_gives_the_same_scores(trained_model, image_folder, capsys):
    image = some_image(image_folder, "blue_ones", 2)
    _, from_graph, _ = render(capsys, trained_model, images=(image,))
    _, from_saved, _ = render(capsys, trained_model, graph=trained_model["saved_model"], images=(image,))
    graph_scores = [float(line.rsplit(" ", 1)[1]) for line in from_graph.splitlines()]
    saved_scores = [float(line.rsplit(" ", 1)[1]) for line in from_saved.splitlines()]
    np.testing.assert_allclose(saved_scores, graph_scores, rtol=1e-5)


def test_folder_in_json_and_csv_with_a_broken_file(trained_model, image_folder, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(os.path.join(image_folder, "green"), folder / "green")
    (folder / "broken.jpg").write_bytes(b"<html>not found</html>")
    (folder / "notes.txt").write_text("ignored: not an image name")
    (folder / ".hidden.jpg").write_bytes(b"ignored")
    status, stdout, stderr = call_command("label-image", f"--graph={trained_model['graph']}",
                                          f"--labels={trained_model['labels']}", f"--image={folder}",
                                          "--output_format=json", "--top_k=2")
    assert status == 1
    assert "broken.jpg" in stderr and "Traceback" not in stderr
    document = json.loads(stdout)
    assert len(document["images"]) == 30
    assert [f["path"] for f in document["failed"]] == [str(folder / "broken.jpg")]
    first = document["images"][0]
    assert len(first["predictions"]) == 2 and first["predictions"][0]["score"] >= first["predictions"][1]["score"]
    assert all(r["predictions"][0]["label"] == "green" for r in document["images"])

    status, out, _ = render(capsys, trained_model, images=(str(folder / "green"),), output_format="csv")
    assert status == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["path", "label_1", "score_1", "label_2", "score_2", "label_3", "score_3"]
    assert len(rows) == 31 and {row[1] for row in rows[1:]} == {"green"}


def test_several_images_are_headed_by_their_paths(trained_model, image_folder, capsys):
    a, b = some_image(image_folder, "green", 1), some_image(image_folder, "Red-Things", 1)
    status, out, _ = render(capsys, trained_model, images=(a, b), top_k=1)
    assert status == 0
    assert out.splitlines() == [f"== {a}", out.splitlines()[1], f"== {b}", out.splitlines()[3]]
    assert out.splitlines()[1].startswith("green ") and out.splitlines()[3].startswith("red things ")


@pytest.fixture(scope="module")
def eval_folder(tmp_path_factory, image_folder):
    """4 green (all right), 3 red with 1 a blue image in disguise, and an unknown class."""
    root = tmp_path_factory.mktemp("eval")
    for cls, count in (("green", 4), ("Red-Things", 3)):
        os.makedirs(root / cls)
        for i in range(count):
            shutil.copy(some_image(image_folder, cls, i), root / cls)
    shutil.copy(some_image(image_folder, "blue_ones", 0), root / "Red-Things" / "impostor.jpg")
    testing.make_image_folder(str(root), class_names=("purple",), images_per_class=2)
    return str(root)


def test_evaluation_numbers_match_a_hand_count(trained_model, eval_folder, capsys):
    status, out, err = render(capsys, trained_model, image_dir=eval_folder, evaluate=True, output_format="json")
    assert status == 0, err
    assert "folder 'purple' is not a label" in err
    report = json.loads(out)
    labels = report["labels"]
    assert labels == ["red things", "blue ones", "green"]
    assert report["accuracy"] == pytest.approx(7 / 8)
    # Rows: true label; columns: predicted. The impostor is a red-things image predicted blue.
    assert report["confusion_matrix"] == [[3, 1, 0], [0, 0, 0], [0, 0, 4]]
    red = report["per_label"]["red things"]
    assert red["count"] == 4 and red["hit_rate"] == pytest.approx(0.75) and red["recall"] == pytest.approx(0.75)
    assert red["precision"] == pytest.approx(1.0) and red["f1"] == pytest.approx(2 * 0.75 / 1.75)
    blue = report["per_label"]["blue ones"]
    assert blue["count"] == 0 and blue["precision"] == pytest.approx(0.0) and blue["recall"] is None
    hits = [r["predictions"][0]["score"] for r in report["images"] if r["correct"]]
    misses = [r["predictions"][0]["score"] for r in report["images"] if not r["correct"]]
    assert report["suggested_threshold"] == pytest.approx((np.mean(hits) + np.mean(misses)) / 2)
    assert red["mean_score_misses"] == pytest.approx(misses[0])


def test_evaluation_text_report_warns_about_wrong_images(trained_model, eval_folder, capsys):
    status, out, _ = render(capsys, trained_model, image_dir=eval_folder, evaluate=True)
    assert status == 0
    assert "WARNING: top label 'blue ones' is wrong, expected 'red things'" in out
    assert "Accuracy: 0.8750 (8 images)" in out
    assert "Confusion matrix" in out and "Suggested score threshold" in out


def test_tflite_model_gates_ci_from_the_command_line(trained_model, eval_folder):
    result = label_image(trained_model, f"--image_dir={eval_folder}", "--evaluate", "--min_accuracy=0.85",
                         "--output_format=json", graph=trained_model["tflite"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(7 / 8)
    assert "meets --min_accuracy 0.85" in result.stderr
    assert "XNNPACK" not in result.stderr and "deprecated" not in result.stderr


def test_min_accuracy_gate(trained_model, eval_folder, capsys):
    assert render(capsys, trained_model, image_dir=eval_folder, evaluate=True, min_accuracy=0.85)[0] == 0
    status, _, stderr = call_command("label-image", f"--graph={trained_model['graph']}",
                                     f"--labels={trained_model['labels']}", f"--image_dir={eval_folder}", "--evaluate",
                                     "--min_accuracy=0.9")
    assert status == 1
    assert "accuracy 0.8750 is below --min_accuracy 0.9" in stderr


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--image=x.jpg"], 2, "--graph is required"),
        (["--graph=g.pb", "--image=x.jpg"], 2, "--labels is required"),
        (["--graph=g.pb", "--labels=l.txt"], 2, "name images"),
        (["--graph=g.pb", "--labels=l.txt", "--image=x", "--min_accuracy=0.5"], 2, "--min_accuracy needs --evaluate"),
        (["--graph=g.pb", "--labels=l.txt", "--image=x", "--output_format=xml"], 2, "output_format"),
        (["--graph=g.pb", "--labels=l.txt", "--image=x", "--report_dir=r"], 2, "--report_dir needs --evaluate"),
        (["--graph=g.pb", "--labels=l.txt", "--image=x", "--unknown_threshold=2"], 2, "--unknown_threshold must be"),
    ],
)
def test_usage_errors(args, code, message):
    status, _, stderr = call_command("label-image", *args)
    assert status == code
    assert message in stderr and "Traceback" not in stderr


def test_missing_files_and_wrong_layers(trained_model, image_folder, tmp_path):
    from retrain.errors import UserError

    image = some_image(image_folder)
    model = dict(trained_model)

    def fails(match, **changes):
        config = config_lib.LabelImageConfig(graph=model["graph"], labels=model["labels"], images=(image,))
        with pytest.raises(UserError, match=match):
            label_image_main.classify_and_print(dataclasses.replace(config, **changes))

    fails("not found", graph=str(tmp_path / "none.pb"))
    fails("Cannot read labels file", labels=str(tmp_path / "none.txt"))
    fails("no input layer 'input'.*Placeholder", input_layer="input")
    short_labels = tmp_path / "labels.txt"
    short_labels.write_text("a\nb\n")
    fails("has 2 labels but the graph's output has 3", labels=str(short_labels))
    # The command turns them into one line and status 1.
    status, _, stderr = call_command("label-image", f"--graph={tmp_path}/none.pb", f"--labels={trained_model['labels']}",
                                     f"--image={image}")
    assert status == 1 and "not found" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_help_lists_flags_and_exit_codes():
    status, stdout, _ = call_command("label-image", "--help")
    assert status == 0
    for flag in ("graph", "labels", "image", "image_dir", "input_layer", "output_layer", "input_height",
                 "input_width", "input_mean", "input_std", "top_k", "output_format", "min_accuracy", "batch_size",
                 "signature", "unknown_threshold", "report_dir"):
        assert f"--{flag}" in stdout or f"--[no]{flag}" in stdout, flag
    assert "--[no]evaluate" in stdout and "--[no]unknown" in stdout
    assert "Exit status" in stdout


@pytest.mark.slow
def test_tensorflow_imported_without_keras_for_graphs_and_keras_importable_after():
    """label-image on a frozen graph or TFLite file skips the Keras import TensorFlow does."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from retrain.commands import cli\n"
        "cli.import_tensorflow_quietly(verbose=False, without_keras=True)\n"
        "import tensorflow as tf\n"
        "print('keras' in sys.modules, float(tf.reduce_sum(tf.ones(3))))\n"
        "import keras\n"
        "print(callable(keras.layers.Dense))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "3.0", "True"], result.stderr[-2000:]
