"""What --tfhub_module may name: URLs, Kaggle handles, local folders; all without network here."""

import hashlib
import os
import shutil

import pytest
from conftest import hide_modules, quick_config

import retrain
from retrain.errors import UserError
from retrain.module import handles

KAGGLE = "google/tiny-colours/TensorFlow2/feature-vector/1"


@pytest.mark.parametrize("handle, expected", [
    ("google/efficientnet-v2/TensorFlow2/imagenet21k-b0-feature-vector/1",
     "google/efficientnet-v2/TensorFlow2/imagenet21k-b0-feature-vector/1"),
    ("google/mobilenet-v3/tensorFlow2/large-100-224-feature-vector", "google/mobilenet-v3/tensorFlow2/large-100-224-feature-vector"),
    ("google/imagenet/TensorFlow1/inception-v3-feature-vector/3/", "google/imagenet/TensorFlow1/inception-v3-feature-vector/3"),
    ("https://www.kaggle.com/models/google/inception-v3/TensorFlow2/feature-vector/2", None),
    ("https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5", None),
    ("google/bert/PyTorch/base/1", None),  # Not a framework TensorFlow loads: a path, then.
    ("models/inception_v3", None),
    ("/abs/google/x/TensorFlow2/y/1", None),
    ("google/x/TensorFlow2/y/latest", None),
])
def test_kaggle_handles_are_told_from_urls_and_paths(handle, expected):
    assert handles.kaggle_handle(handle) == expected


def test_a_folder_that_looks_like_a_handle_is_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me" / "m" / "TensorFlow2" / "v").mkdir(parents=True)
    assert handles.kaggle_handle("me/m/TensorFlow2/v") is None
    assert handles.kaggle_handle("me/m/TensorFlow2/v/2") == "me/m/TensorFlow2/v/2"


def kagglehub_cache(root, handle, module):
    """A kagglehub cache holding module under handle, as kagglehub.model_download leaves it."""
    owner, model, framework, variation, version = handle.split("/")
    folder = root / "models" / owner / model / framework / variation
    shutil.copytree(module, folder / version)
    (folder / f"{version}.complete").touch()
    return root


def test_a_kaggle_handle_through_kagglehub_and_its_cache(tmp_path, image_folder, tiny_module, monkeypatch):
    pytest.importorskip("kagglehub", reason='needs pip install "retrain[kaggle]" (.ci/run installs it)')
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(kagglehub_cache(tmp_path / "kaggle", KAGGLE, tiny_module)))
    result = retrain.run(quick_config(tmp_path / "out", image_folder, KAGGLE, steps=60))
    assert result.test_accuracy is not None and result.bottlenecks_computed > 0
    # Cache files are named by the handle as given, as retrain.py named them by its URL.
    names = [name for _, _, files in os.walk(tmp_path / "out" / "bottlenecks") for name in files if name.endswith(".txt")]
    assert names and all("google~tiny-colours~TensorFlow2~feature-vector~1" in name for name in names), names[:3]


def test_a_kaggle_handle_without_kagglehub_is_its_kaggle_url(tmp_path, image_folder, tiny_module, monkeypatch):
    hide_modules(monkeypatch, "kagglehub")
    cache = tmp_path / "tfhub"
    url = handles.kaggle_url(KAGGLE)
    shutil.copytree(tiny_module, cache / hashlib.sha1(url.encode()).hexdigest())  # tensorflow_hub's cache layout.
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    result = retrain.run(quick_config(tmp_path / "out", image_folder, KAGGLE, steps=60))
    assert result.test_accuracy is not None
    with pytest.raises(UserError, match='names no version: add one .*pip install "retrain\\[kaggle\\]"'):
        retrain.run(quick_config(tmp_path / "out2", image_folder, KAGGLE.rsplit("/", 1)[0], steps=60))


def test_an_unreachable_kaggle_is_one_line_saying_what_to_do(tmp_path, image_folder, monkeypatch):
    pytest.importorskip("kagglehub")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")  # kagglesdk: http://localhost:7777, nothing there.
    with pytest.raises(UserError) as raised:
        retrain.run(quick_config(tmp_path / "out", image_folder, KAGGLE, steps=60))
    message = str(raised.value)
    assert message.startswith(f"Cannot download module {KAGGLE}: this machine cannot reach Kaggle")
    assert "--tfhub_module /path/to/module" in message and "\n" not in message
