"""retrain-compare: modules ranked on validation, figures equal to plain retrain runs, warm reruns."""

import dataclasses
import json
import os

import pytest
from conftest import browser_dom, call_command, chromium, make_split_safe_folder, quick_config, run_tool

import retrain
from retrain import testing
from retrain.comparison import outputs

# Three classes told apart by red and green only: a module that sees blue alone cannot.
COLOURS = ((200, 60, 100), (60, 200, 100), (60, 60, 100))
STEPS = 120


@pytest.fixture(scope="module")
def modules(tmp_path_factory, tiny_module):
    root = tmp_path_factory.mktemp("compare_modules")
    return {
        "good": tiny_module,
        "blind": testing.build_tunable_module(str(root / "blind"), seen_channels=(False, False, True)),
        # A classification module (1001 logits), in a folder whose name must be escaped in the page.
        "classification": testing.build_tiny_module(str(root / "logits <b>x</b>"), classes=1001, seed=5),
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_split_safe_folder(tmp_path_factory.mktemp("compare_images"), "images",
                                  class_names=("pink", "lime", "slate"), images_per_class=40, colours=COLOURS, seed=4)


def compare_config(root, folder, handles, **run_fields):
    run = quick_config(root, folder, "", steps=STEPS, testing_percentage=20, validation_percentage=20, **run_fields)
    return retrain.CompareConfig(modules=tuple(handles), run=run, output_dir=str(root / "compared"))


@pytest.fixture(scope="module")
def compared(tmp_path_factory, modules, folder):
    root = tmp_path_factory.mktemp("compared")
    config = compare_config(root, folder, [modules["blind"], modules["classification"], modules["good"]])
    return root, config, retrain.compare(config)


def test_the_ranking_follows_validation_accuracy_and_the_blind_module_is_last(compared, modules):
    _, _, comparison = compared
    ranked = [comparison.modules[i] for i in comparison.ranking]
    accuracies = [r.validation_accuracy for r in ranked]
    assert accuracies == sorted(accuracies, reverse=True)
    assert ranked[-1].module == modules["blind"] and ranked[-1].validation_accuracy < 0.7
    assert ranked[0].validation_accuracy >= 0.9 and comparison.recommended == comparison.ranking[0]
    assert comparison.reason.startswith(ranked[0].module) and "validation" in comparison.reason
    classification = next(r for r in comparison.modules if r.module == modules["classification"])
    assert classification.feature_size == 1001 and classification.validation_accuracy >= 0.9
    for r in comparison.modules:
        assert r.speed.latency_ms > 0 and r.speed.images_per_second > 0 and r.graph_bytes > 1000
        assert r.expected_calibration_error is not None and 0 <= r.expected_calibration_error <= 1
        assert r.extraction_images_per_second and r.bottlenecks_computed > 0


def test_each_module_scores_as_a_plain_retrain_run_with_its_seed(compared, modules, folder, tmp_path):
    root, config, comparison = compared
    index = config.modules.index(modules["classification"])
    compared_result = comparison.modules[index]
    plain = retrain.run(quick_config(tmp_path, folder, modules["classification"], steps=STEPS, seed=comparison.seed,
                                     testing_percentage=20, validation_percentage=20,
                                     bottleneck_dir=config.run.bottleneck_dir))
    assert plain.bottlenecks_computed == 0  # The comparison filled retrain's own cache.
    assert plain.test_accuracy == compared_result.test_accuracy
    assert plain.validation_accuracy == compared_result.validation_accuracy
    assert os.path.getsize(tmp_path / "graph.pb") == compared_result.graph_bytes
    with open(os.path.join(compared_result.folder, "output_labels.txt")) as labels:
        assert labels.read().split("\n")[:3] == plain.labels


def test_a_warm_rerun_only_trains_heads(compared):
    root, config, comparison = compared
    again = retrain.compare(config)
    assert all(r.bottlenecks_computed == 0 and r.extraction_images_per_second is None for r in again.modules)
    assert [r.validation_accuracy for r in again.modules] == [r.validation_accuracy for r in comparison.modules]
    assert again.ranking == comparison.ranking
    assert "cached" in outputs.table_lines(again)[1]


def test_comparison_json_and_table(compared):
    root, config, comparison = compared
    path = outputs.write_json(comparison)
    written = json.loads(open(path).read())
    assert written["recommended"] == comparison.modules[comparison.recommended].module
    assert written["seed"] == comparison.seed and len(written["modules"]) == 3
    for record, result in zip(written["modules"], comparison.modules):
        assert {"module", "test_accuracy", "validation_accuracy", "expected_calibration_error", "graph_bytes",
                "latency_ms", "images_per_second"} <= set(record)
        assert record["module"] == result.module and record["graph_bytes"] == result.graph_bytes
    ranks = [record["rank"] for record in written["modules"]]
    assert sorted(ranks) == [1, 2, 3]
    lines = outputs.table_lines(comparison)
    assert lines[0].split()[:3] == ["rank", "module", "input"]
    assert lines[1].split()[0].rstrip("*") == "1" and "never test" in lines[-1]


def test_pareto_front():
    from retrain.comparison.runs import pareto_front

    points = [(10.0, 0.90), (5.0, 0.85), (20.0, 0.89), (5.0, 0.80), (30.0, 0.95)]
    assert pareto_front(points, ["a", "b", "c", "d", "e"]) == ["b", "a", "e"]


@pytest.mark.skipif(chromium() is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_the_page_shows_the_table_and_plot_with_names_escaped(compared, tmp_path):
    pytest.importorskip("jinja2")
    root, config, comparison = compared
    page = outputs.write_page(comparison)
    html = open(page).read()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    dom, console = browser_dom(f"file://{page}", tmp_path / "profile")
    assert console == []
    assert dom.count("<tr") == 4 and 'class="recommended"' in dom
    assert os.path.getsize(os.path.join(config.output_dir, outputs.PLOT_NAME)) > 5000


def test_a_module_that_fails_is_reported_and_the_others_compared(tmp_path, folder, modules):
    missing = str(tmp_path / "no_such_module")
    config = dataclasses.replace(compare_config(tmp_path, folder, [missing, modules["good"]]), latency_batch_size=4)
    comparison = retrain.compare(config)
    assert "not found" in comparison.modules[0].error and comparison.ranking == [1]
    assert comparison.modules[1].speed.batch_size == 4
    assert "failed: " in "\n".join(outputs.table_lines(comparison))


def test_usage_errors_are_one_line(tmp_path, folder):
    status, _, stderr = call_command("retrain-compare", f"--image_dir={folder}", f"--output_dir={tmp_path}")
    assert status == 2 and "name the modules to compare" in stderr
    status, _, stderr = call_command("retrain-compare", f"--image_dir={folder}", "--architecture=inception_v3",
                                     "--tfhub_module=x")
    assert status == 2 and "--architecture names one module" in stderr


def test_retrain_compare_command(tmp_path, folder, modules):
    out = tmp_path / "out"
    done = run_tool("retrain-compare", f"--image_dir={folder}", f"--tfhub_module={modules['good']}",
                    f"--tfhub_module={modules['blind']}", f"--bottleneck_dir={tmp_path / 'cache'}",
                    f"--output_dir={out}", "--how_many_training_steps=60", "--random_seed=7",
                    "--validation_percentage=20", "--testing_percentage=20")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Module 1 of 2" in done.stderr and "Module 2 of 2" in done.stderr
    assert "Recommended (chosen on validation accuracy, never test):" in done.stdout
    written = json.loads((out / "comparison.json").read_text())
    assert written["seed"] == 7 and written["recommended"] == modules["good"]
    assert (out / "index.html").is_file() and len(list(out.glob("01-*tiny/output_graph.pb"))) == 1
    assert (out / "logs").is_dir()


def test_help_documents_every_flag():
    status, stdout, _ = call_command("retrain-compare", "--help")
    assert status == 0 and "retrain-compare" in stdout
    for flag in ("image_dir", "tfhub_module", "output_dir", "bottleneck_dir", "testing_percentage",
                 "validation_percentage", "how_many_training_steps", "learning_rate", "random_seed", "fine_tune",
                 "latency_batch_size", "final_tensor_name", "image_size", "model_dir", "allow_unsafe_ops",
                 "logging_verbosity", "unknown_threshold", "flip_left_right", "distorted_copies"):
        assert f"--{flag}" in stdout or f"--[no]{flag}" in stdout, flag
