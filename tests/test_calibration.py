"""Calibrated scores, the "unknown" answer, the evaluation report and TensorBoard's evaluation tabs."""

import json
import pathlib
import re
import shutil
import subprocess
import typing

import numpy as np
import pytest
import tensorflow as tf
from conftest import chromium, hide_modules, make_split_safe_folder, quick_config, run_frozen_graph
from PIL import Image

import retrain
from retrain import config as config_lib
from retrain import scoring, testing
from retrain.commands import label_image_main
from retrain.evaluation import calibration
from retrain.exports import frozen_graph


def sampled_logits(temperature, n=6000, classes=5, seed=0):
    """Logits whose labels are drawn from softmax(true logits); shown to a model as true * temperature."""
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(n, classes)) * 2.0
    probabilities = scoring.softmax(true)
    labels = np.array([rng.choice(classes, p=p) for p in probabilities])
    return true * temperature, labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_fitting_recovers_a_known_temperature(temperature):
    logits, labels = sampled_logits(temperature)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(temperature, rel=0.08)


def test_calibration_error_falls_on_held_out_data():
    logits, labels = sampled_logits(3.0, n=8000)
    fit, held = slice(0, 4000), slice(4000, None)
    temperature = calibration.fit_temperature(logits[fit], labels[fit])
    before = calibration.expected_calibration_error(scoring.softmax(logits[held]), labels[held])
    after = calibration.expected_calibration_error(scoring.softmax(logits[held], temperature), labels[held])
    assert after < before / 3


def test_a_perfect_validation_set_keeps_a_finite_temperature():
    rng = np.random.default_rng(1)
    labels = rng.integers(3, size=40)
    logits = np.eye(3)[labels] * 30.0  # All right, by a wide margin.
    assert 0.2 < calibration.fit_temperature(logits, labels) <= 1.01


def test_rescaling_scores_equals_scaling_logits():
    logits = np.random.default_rng(2).normal(size=(7, 4)) * 3
    np.testing.assert_allclose(scoring.rescale(scoring.softmax(logits), 1.7),
                               scoring.softmax(logits, 1.7), rtol=1e-5, atol=1e-7)


def test_threshold_rule():
    rng = np.random.default_rng(3)
    confidence = rng.random(2000)
    correct = rng.random(2000) < confidence  # Right as often as the score says.
    chosen = calibration.choose_threshold(confidence, correct, 0.95)
    assert chosen.accuracy >= 0.95
    lower = calibration.measure_threshold(confidence, correct, chosen.value - 0.02)
    assert lower.accuracy < 0.95 and lower.coverage > chosen.coverage  # The lowest that reaches it.
    perfect = calibration.choose_threshold(confidence, np.ones(2000, bool), 0.95)
    assert perfect.coverage == pytest.approx(0.95, abs=0.002)  # Still keeps only 95% of the known.


class HeldOutRun(typing.NamedTuple):
    root: pathlib.Path  # Holds unknown/cyan, the held-out colour.
    images: str  # The training folder: root/images, or images-1... (see make_split_safe_folder).
    out: pathlib.Path
    result: "retrain.pipeline.RetrainResult"


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory, tiny_module):
    """Trained on four colours; a fifth (cyan, between green and blue) is held out."""
    root = tmp_path_factory.mktemp("open_world")
    images = make_split_safe_folder(root, "images", class_names=("red", "green", "blue", "purple"),
                                    images_per_class=60, seed=2)
    unknown = root / "unknown" / "cyan"
    unknown.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(40):
        testing.synthetic_image(rng, testing.PALETTE[5]).save(unknown / f"cyan_{i}.jpg")
    out = root / "out"
    config = quick_config(
        out, images, tiny_module, steps=400, seed=1, testing_percentage=10, validation_percentage=25, bottleneck_dir=root / "cache",
        report_dir=str(out / "report"), summaries_dir=str(out / "logs"), saved_model_dir=str(out / "served"),
        output_tflite=str(out / "model.tflite"),
    )
    return HeldOutRun(root, images, out, retrain.run(config))


def test_the_run_reports_its_calibration(held_out_run):
    result = held_out_run.result
    report = result.calibration
    assert report.validation_count > 12 and report.calibration.temperature > 0
    assert report.ece_validation_after <= report.ece_validation_before + 1e-9
    assert report.threshold.coverage >= 0.9 and report.threshold.accuracy >= 0.95


def fraction_unknown(out, images, threshold=None, graph="graph.pb"):
    run = retrain.classify(retrain.LabelImageConfig(graph=str(out / graph), labels=str(out / "labels.txt"),
                                                    images=(str(images),), unknown=True, unknown_threshold=threshold))
    return np.mean([r.unknown for r in run.images])


def test_a_class_never_trained_on_is_mostly_unknown(held_out_run):
    root, images, out, result = held_out_run
    lists = retrain.create_image_lists(images, 10, 10)
    test_dir = root / "known_test"
    for label in lists:
        for name in lists[label]["testing"] + lists[label]["validation"]:  # Never trained on.
            (test_dir / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(lists.image_path(label, name), test_dir / label / name)
    known = fraction_unknown(out, test_dir)
    never_seen = fraction_unknown(out, root / "unknown")
    assert never_seen >= 0.6 and known <= 0.2 and never_seen > known + 0.5
    for graph in ("model.tflite", "served"):  # The threshold travels with every format.
        assert fraction_unknown(out, root / "unknown", graph=graph) == never_seen


def test_tf1_loading_still_gives_final_result_unchanged(held_out_run):
    _, _, out, result = held_out_run
    bottlenecks = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    plain, calibrated, logits, t, threshold = run_frozen_graph(
        out / "graph.pb",
        {frozen_graph.BOTTLENECK_INPUT_NODE + ":0": bottlenecks},
        ["final_result:0", "final_result_calibrated:0", frozen_graph.LOGITS_NODE + ":0",
         frozen_graph.TEMPERATURE_NODE + ":0", frozen_graph.UNKNOWN_THRESHOLD_NODE + ":0"],
    )
    np.testing.assert_allclose(plain, scoring.softmax(logits), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(calibrated, scoring.softmax(logits, t), rtol=1e-5, atol=1e-7)
    assert t == pytest.approx(result.calibration.calibration.temperature)
    assert threshold == pytest.approx(result.calibration.threshold.value)


def test_label_image_prints_unknown_first(held_out_run, capsys):
    root, _, out, _ = held_out_run
    image = str(root / "unknown" / "cyan" / "cyan_0.jpg")
    base = config_lib.LabelImageConfig(graph=str(out / "graph.pb"), labels=str(out / "labels.txt"), images=(image,))
    label_image_main.classify_and_print(base)
    plain = capsys.readouterr().out.splitlines()
    assert not plain[0].startswith("unknown") and len(plain) == 4  # label_image.py's output, unchanged.
    label_image_main.classify_and_print(config_lib.LabelImageConfig(**{**base.__dict__, "unknown_threshold": 1.0}))
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"unknown 0\.\d+", lines[0]) and lines[1:] == plain
    label_image_main.classify_and_print(config_lib.LabelImageConfig(
        **{**base.__dict__, "unknown_threshold": 1.0, "output_format": "json"}))
    record = json.loads(capsys.readouterr().out)["images"][0]
    assert record["unknown"] is True and 0 < record["calibrated_score"] < 1
    label_image_main.classify_and_print(config_lib.LabelImageConfig(
        **{**base.__dict__, "unknown_threshold": 0.0, "output_format": "csv"}))
    header, row = capsys.readouterr().out.splitlines()
    assert header.startswith("path,unknown,calibrated_score,label_1") and row.split(",")[1] == "False"


def test_evaluation_adds_coverage_at_the_threshold(held_out_run):
    root, images, out, _ = held_out_run
    run = retrain.evaluate(retrain.LabelImageConfig(graph=str(out / "graph.pb"), labels=str(out / "labels.txt"),
                                                    image_dir=images, unknown=True))
    evaluation = run.evaluation
    confident = [r for r in run.images if not r.unknown]
    assert evaluation.coverage == pytest.approx(len(confident) / len(run.images))
    assert evaluation.covered_accuracy == pytest.approx(
        np.mean([r.ranked(run.labels, 1)[0][0] == r.true_label for r in confident]))
    assert set(evaluation.per_label) == {"red", "green", "blue", "purple"}
    assert all(stats.coverage is not None for stats in evaluation.per_label.values())


def test_an_old_graph_without_calibration_needs_an_explicit_threshold(held_out_run, tmp_path):
    from retrain.errors import UserError

    root, _, out, _ = held_out_run
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(open(out / "graph.pb", "rb").read())
    kept = [n for n in graph_def.node if not n.name.startswith("calibration/") and not n.name.endswith("_calibrated")]
    del graph_def.node[:]
    graph_def.node.extend(kept)
    (tmp_path / "old.pb").write_bytes(graph_def.SerializeToString())
    config = retrain.LabelImageConfig(graph=str(tmp_path / "old.pb"), labels=str(out / "labels.txt"),
                                      images=(str(root / "unknown"),), unknown=True)
    with pytest.raises(UserError, match="carries no unknown threshold"):
        retrain.classify(config)
    run = retrain.classify(retrain.LabelImageConfig(**{**config.__dict__, "unknown_threshold": 0.99}))
    assert all(r.calibrated_scores is None for r in run.images)  # Compared with the plain top score.


def test_tensorboard_gets_the_confusion_matrix_and_pr_curves(held_out_run):
    from tensorboard.backend.event_processing import event_accumulator

    out = held_out_run.out
    events = event_accumulator.EventAccumulator(str(out / "logs" / "validation"), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    assert "confusion_matrix" in tags
    curves = set(events.PluginTagToContent("pr_curves"))  # TensorBoard's PR Curves tab shows these.
    assert curves == {f"pr_curve/{label}/pr_curves" for label in ("red", "green", "blue", "purple")}
    image = events.Tensors("confusion_matrix")[-1]
    encoded = tf.make_ndarray(image.tensor_proto)[2]  # [width, height, png]
    pixels = tf.io.decode_png(encoded).numpy()
    assert pixels.shape[0] == pixels.shape[1] and pixels.std() > 10


@pytest.mark.skipif(chromium() is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_the_report_renders_in_a_real_browser(held_out_run, tmp_path):
    _, _, out, result = held_out_run
    page = out / "report" / "index.html"
    assert result.report_path == str(page)
    html = page.read_text()
    sources = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert {"confusion_matrix.png", "reliability.png", "coverage.png"} <= set(sources)
    for source in sources:
        with Image.open(out / "report" / source) as picture:
            assert np.asarray(picture.convert("L")).std() > 5, source  # Exists, and is not blank.
    screenshot = tmp_path / "page.png"
    browser = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--log-level=0",
         "--window-size=1200,2400", f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    console = [line for line in browser.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    with Image.open(screenshot) as shot:
        pixels = np.asarray(shot.convert("L"))
    assert pixels.std() > 10  # Something was drawn.
    assert "Misclassified images" in html and "Per class" in html


def test_a_missing_report_library_is_one_clear_line(monkeypatch, tmp_path):
    from retrain.errors import UserError
    from retrain.evaluation import report

    hide_modules(monkeypatch, "matplotlib")
    with pytest.raises(UserError, match=re.escape('pip install "retrain[report]"')):
        report.check_available()
