"""ONNX and the web page: the same model where users deploy it next, checked in ONNX Runtime and a real browser."""

import functools
import http.server
import json
import os
import re
import shutil
import threading

import numpy as np
import pytest
from conftest import (browser_dom, call_command, chromium, frozen_graph_scores, hide_modules,
                      make_split_safe_folder, quick_config, run_tool)

import retrain
from retrain import testing
from retrain.errors import UserError
from retrain.module import scan

pytest.importorskip("tf2onnx", reason='needs pip install "retrain[onnx]" (.ci/run installs it)')
pytest.importorskip("onnxruntime", reason='needs pip install "retrain[onnx]" (.ci/run installs it)')


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_module):
    """Enough validation images (about 80) for calibration, so the exports carry it."""
    out = tmp_path_factory.mktemp("onnx")
    images = make_split_safe_folder(out, "images", class_names=("red", "green", "blue"), images_per_class=60, seed=3)
    result = retrain.run(quick_config(out, images, tiny_module, output_onnx=str(out / "model.onnx"),
                                      output_web=str(out / "web"), validation_percentage=45))
    return out, result


def test_the_onnx_model_is_the_frozen_graph_with_its_labels_and_calibration(exported):
    import onnx

    out, result = exported
    parity = result.exports["output_onnx"]
    assert parity.category == "testing" and parity.count == result.test_count
    assert parity.agreement == 1.0 and parity.max_score_difference < 1e-5
    model = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["image"] and "scores" in [o.name for o in model.graph.output]
    metadata = json.loads({p.key: p.value for p in model.metadata_props}["retrain"])
    assert metadata["labels"] == result.labels
    assert metadata["temperature"] == pytest.approx(result.calibration.calibration.temperature)
    assert metadata["unknown_threshold"] == pytest.approx(result.calibration.calibration.unknown_threshold)
    assert {node.domain for node in model.graph.node} <= {""}
    scan.check_onnx(model.SerializeToString(), "ours")


def test_label_image_runs_the_onnx_file_as_the_graph_would(exported):
    out, result = exported
    paths = list(result.model.held_out.image_paths[:6])
    answers = retrain.classify(retrain.LabelImageConfig(graph=str(out / "model.onnx"), images=tuple(paths)))
    assert answers.labels == result.labels  # From the model's metadata: no --labels.
    expected, _ = frozen_graph_scores(out / "graph.pb", paths)
    np.testing.assert_allclose(np.stack([a.scores for a in answers.images]), expected, rtol=1e-4, atol=1e-5)
    assert all(a.calibrated_scores is not None for a in answers.images)
    status, stdout, _ = call_command("label-image", f"--graph={out / 'model.onnx'}", f"--image={paths[0]}")
    assert status == 0 and stdout.split()[0] == result.labels[int(expected[0].argmax())]


def serve(folder):
    """An HTTP server on 127.0.0.1 for folder, in a thread: (base URL, the paths asked for, stop())."""
    asked = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            asked.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_address[1]}", asked, server.shutdown


def page_answer(url, profile):
    dom, _ = browser_dom(url, profile)
    found = re.search(r'<pre id="result">([^<]*)</pre>', dom)
    assert found and found.group(1), dom[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.mark.skipif(chromium() is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_the_page_classifies_in_a_real_browser_as_label_image_does(exported, tmp_path):
    out, result = exported
    web = out / "web"
    assert sorted(os.listdir(web)) == sorted(["THIRD_PARTY_NOTICES.txt", "config.json", "index.html", "model.onnx",
                                              "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
                                              "ort.wasm.min.js", "page.js"])
    assert result.exports["output_web"].agreement == 1.0  # Its model, resize inside, in ONNX Runtime.
    base, asked, stop = serve(web)
    try:
        for i, path in enumerate(result.model.held_out.image_paths[:2]):
            shutil.copy(path, web / f"photo{i}.jpg")
            answer = page_answer(f"{base}/index.html?image=photo{i}.jpg", tmp_path / f"profile{i}")
            expected = retrain.classify(retrain.LabelImageConfig(graph=str(out / "graph.pb"),
                                                                 labels=str(out / "labels.txt"), images=(path,)))
            top_label, top_score = expected.images[0].ranked(expected.labels, 1)[0]
            assert answer["predictions"][0]["label"] == top_label
            assert abs(answer["predictions"][0]["score"] - top_score) <= 0.02
            assert len(answer["predictions"]) == 3 and answer["unknown"] in (True, False)
    finally:
        stop()
    outside = [path for path in asked if "127.0.0.1" in path or path.startswith("http")]
    assert outside == [] and any("model.onnx" in path for path in asked)
    assert not any("favicon" in path for path in asked)
    html = (web / "index.html").read_text()
    assert "default-src 'self'" in html and "http" not in html.replace("http-equiv", "")


def test_any_input_size_and_a_tuned_module_export(tmp_path):
    """A module at 32x32 that sees only blue until tuned: the export must carry the tuned weights."""
    module = testing.build_tunable_module(str(tmp_path / "tunable"), image_size=32, seen_channels=(False, False, True))
    folder = make_split_safe_folder(tmp_path, "images", class_names=("pinkish", "greenish"), images_per_class=60,
                                    colours=((200, 60, 100), (60, 200, 100)), seed=3)
    config = quick_config(tmp_path / "out", folder, module, output_onnx=str(tmp_path / "out" / "m.onnx"), steps=200,
                          testing_percentage=20, validation_percentage=20,
                          fine_tune=retrain.FineTuneConfig(enabled=True, epochs=6, learning_rate=0.05, batch_size=8))
    result = retrain.run(config)
    assert result.refinement.kept_epoch > 0 and result.model.module.tuned
    parity = result.exports["output_onnx"]
    assert parity.agreement == 1.0 and parity.max_score_difference < 1e-4
    answers = retrain.classify(retrain.LabelImageConfig(graph=str(tmp_path / "out" / "m.onnx"),
                                                        images=tuple(result.model.held_out.image_paths)))
    assert [a.predicted for a in answers.images] == result.model.logits(result.model.held_out.images).argmax(1).tolist()


def test_a_missing_extra_is_one_line_before_any_work(exported, tmp_path, image_folder, tiny_module, monkeypatch):
    hide_modules(monkeypatch, "tf2onnx", "onnxruntime", "onnx")
    with pytest.raises(UserError, match='pip install "retrain\\[onnx\\]"'):
        retrain.run(quick_config(tmp_path, image_folder, tiny_module, output_web=str(tmp_path / "web")))
    assert not (tmp_path / "bottlenecks").exists()
    out, result = exported
    status, stdout, stderr = call_command("label-image", f"--graph={out / 'model.onnx'}",
                                          f"--image={result.model.held_out.image_paths[0]}")
    assert status == 1 and stdout == "" and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].endswith('pip install "retrain[onnx]"')


def test_a_web_runtime_that_is_not_the_published_one_is_refused(tmp_path, monkeypatch):
    from retrain.exports import onnxruntime_web

    published = onnxruntime_web.runtime_files()  # The cache, else the registry.
    fake = tmp_path / "onnxruntime-web.tgz"
    fake.write_bytes(b"not the tarball")
    with pytest.raises(UserError, match="is not onnxruntime-web 1.31.1 as the npm registry publishes it"):
        onnxruntime_web.runtime_files(str(fake))
    with pytest.raises(UserError, match="holds no onnxruntime-web"):
        onnxruntime_web.runtime_files(str(tmp_path))
    package = tmp_path / "onnxruntime-web" / "dist"
    package.mkdir(parents=True)
    for name, data in published.items():
        (package / name).write_bytes(data)
    assert onnxruntime_web.runtime_files(str(package.parent)) == published  # An unpacked package.
    (package / "ort.wasm.min.js").write_bytes(published["ort.wasm.min.js"] + b"\nfetch('https://evil.example');")
    with pytest.raises(UserError, match="ort.wasm.min.js differ from onnxruntime-web 1.31.1"):
        onnxruntime_web.runtime_files(str(package.parent))
    # A tampered cache is fetched again, not served; offline, the message says what to do.
    monkeypatch.setenv("RETRAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9")
    cached = tmp_path / "cache" / "onnxruntime-web-1.31.1"
    cached.mkdir(parents=True)
    for name, data in published.items():
        (cached / name).write_bytes(data)
    assert onnxruntime_web.runtime_files() == published
    (cached / "ort-wasm-simd-threaded.mjs").write_bytes(b"// altered")
    with pytest.raises(UserError, match="npm pack onnxruntime-web@1.31.1.*--web_runtime FILE"):
        onnxruntime_web.runtime_files()


def test_retrain_and_label_image_commands_with_the_onnx_extra(tmp_path, image_folder, tiny_module):
    model = tmp_path / "model.onnx"
    trained = run_tool("retrain", f"--image_dir={image_folder}", f"--tfhub_module={tiny_module}",
                       f"--bottleneck_dir={tmp_path / 'bottlenecks'}", f"--output_graph={tmp_path / 'graph.pb'}",
                       f"--output_labels={tmp_path / 'labels.txt'}", f"--summaries_dir={tmp_path / 'summaries'}",
                       "--how_many_training_steps=30", f"--output_onnx={model}", f"--output_web={tmp_path / 'web'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert re.search(r"ONNX agrees with graph.pb on 100.0% of \d+ test images; largest score difference 0.000",
                     trained.stderr), trained.stderr[-3000:]
    assert (tmp_path / "web" / "index.html").is_file() and "web page" in trained.stdout
    image = sorted(os.path.join(root, name) for root, _, names in os.walk(image_folder) for name in names)[0]
    answered = run_tool("label-image", f"--graph={model}", f"--image={image}")
    assert answered.returncode == 0, answered.stderr[-3000:]
    lines = answered.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0].rsplit(" ", 1)[0] in (tmp_path / "labels.txt").read_text().splitlines()



def test_an_onnx_model_with_custom_operators_is_refused(exported):
    import onnx

    out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    model.graph.node.add(op_type="RunShell", domain="com.example.evil", name="shell")
    with pytest.raises(scan.UnsafeModelError, match='com.example.evil.RunShell \\(graph node "shell"\\)'):
        scan.check_onnx(model.SerializeToString(), "evil.onnx")


def test_an_onnx_model_with_damaged_metadata_is_one_line(exported, tmp_path):
    import onnx

    out, result = exported
    model = onnx.load(str(out / "model.onnx"))
    for entry in model.metadata_props:
        if entry.key == "retrain":
            entry.value = json.dumps({"labels": "a,b,c", "temperature": "hot"})
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(model.SerializeToString())
    status, stdout, stderr = call_command("label-image", f"--graph={damaged}",
                                          f"--image={result.model.held_out.image_paths[0]}")
    assert status == 1 and stdout == ""
    assert "its retrain metadata has an invalid labels, temperature; the model is damaged" in stderr
    assert "Traceback" not in stderr


def test_a_poor_agreement_warns_naming_the_format_once(caplog):
    from retrain.exports import parity

    caplog.set_level("INFO", logger="absl")  # Earlier tests may have set absl's own level higher.
    measured = parity.Parity("testing", 40, 0.9, 0.2, 0.8, 0.85)
    found = parity.finish(measured, 2.5, name="The web page's model", kind="web page's", output_graph="/x/g.pb",
                          min_agreement=0.99, advice="please report it")
    assert found.conversion_seconds == 2.5 and found.agreement == 0.9
    assert "The web page's model agrees with g.pb on 90.0% of 40 test images" in caplog.text
    assert "The web page's model agrees with the frozen graph on only 90.0% of the test images" in caplog.text
    assert parity.finish(None, 1.0, name="ONNX", kind="ONNX", output_graph="", min_agreement=0.99, advice="") is None
    assert "the ONNX model's agreement with the frozen graph is not measured" in caplog.text
