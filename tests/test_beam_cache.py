"""The bottleneck cache filled on Apache Beam: the same files retrain writes, then a warm retrain."""

import filecmp
import os
import pathlib

import numpy as np
import pytest
from conftest import (
    cache_files,
    call_command,
    hide_modules,
    make_split_safe_folder,
    quick_config,
    run_tool,
)

import retrain
from retrain.cache import beam
from retrain.data import module_inputs
from retrain.data.preprocessing import Preprocessing
from retrain.errors import UserError

pytest.importorskip("apache_beam", reason='needs pip install "retrain[beam]" (.ci/run installs it)')


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = pathlib.Path(make_split_safe_folder(tmp_path_factory.mktemp("beam"), "images", class_names=("red", "green"),
                                               images_per_class=12, seed=7))
    (root / "green" / "broken.jpg").write_bytes(b"<html>404</html>")
    return str(root)


def config_for(tmp_path, folder, module, cache="cache"):
    return quick_config(tmp_path / "out", folder, module, steps=20, seed=1, testing_percentage=10,
                        bottleneck_dir=tmp_path / cache, bottleneck_batch_size=1)


@pytest.mark.slow
def test_beam_fills_the_cache_retrain_would_and_retrain_then_computes_nothing(tmp_path, folder, tiny_module):
    args = [f"--image_dir={folder}", f"--tfhub_module={tiny_module}", f"--bottleneck_dir={tmp_path}/cache",
            "--bottleneck_batch_size=1", "--runner=DirectRunner", "--direct_running_mode=multi_processing",
            "--direct_num_workers=2"]
    result = run_tool("retrain-cache", *args)
    assert result.returncode == 0, result.stderr
    assert "24 of 25 bottlenecks are cached" in result.stderr and "(24 computed now)" in result.stderr
    assert "Skipped 1 file(s) that are not readable images" in result.stderr
    assert f"{os.path.join(folder, 'green', 'broken.jpg')} is not a readable image" in result.stderr
    assert "Traceback" not in result.stderr

    # retrain's own cache, made with the same batches (one image each), holds the same bytes.
    own = retrain.run(config_for(tmp_path, folder, tiny_module, cache="own"))
    assert own.bottlenecks_computed == 24
    ours = sorted(os.path.relpath(p, tmp_path / "cache") for p in cache_files(tmp_path / "cache"))
    theirs = sorted(os.path.relpath(p, tmp_path / "own") for p in cache_files(tmp_path / "own"))
    assert ours == theirs and len(ours) == 24
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "cache", tmp_path / "own", ours, shallow=False)
    assert mismatch == [] and errors == []

    again = run_tool("retrain-cache", *args)
    assert again.returncode == 0 and "(0 computed now)" in again.stderr
    warm = retrain.run(config_for(tmp_path, folder, tiny_module))
    assert warm.bottlenecks_computed == 0 and warm.bottlenecks_reused == 24


def test_decoding_on_workers_gives_retrains_pixels(folder):
    paths = [os.path.join(folder, "red", name) for name in sorted(os.listdir(os.path.join(folder, "red")))][:6]
    spec = beam.ModuleSpec("m", None, "", "", "m", 24, 24, 32)
    decoder = beam.DecodeImage(spec, retrain.DistortionConfig())
    decoder.setup()
    expected = {}
    for positions, batch, _ in module_inputs.module_input_batches(paths, preprocessing=Preprocessing(24, 24),
                                                                   batch_size=4):
        expected.update(zip(positions, np.asarray(batch)))
    for position, path in enumerate(paths):
        item = beam.WorkItem(path, os.path.relpath(path, folder), "unused", None, 0, 0)
        np.testing.assert_array_equal(decoder.decode(item), expected[position])


def test_unknown_flags_are_usage_errors(tmp_path):
    status, _, stderr = call_command("retrain-cache", "--image_dir=.", "--no_such_option=3")
    assert status == 2
    assert "unknown flag(s) for retrain-cache or Apache Beam: --no_such_option" in stderr
    assert "Traceback" not in stderr


def test_missing_beam_is_one_line_naming_the_extra(monkeypatch):
    hide_modules(monkeypatch, "apache_beam")
    with pytest.raises(UserError, match='pip install "retrain\\[beam\\]"'):
        beam.import_beam()
