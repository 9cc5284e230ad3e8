"""The tf.data path gives the Python path's pixels, and the same skips, for every file."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from retrain.data import images, module_inputs
from retrain.data.preprocessing import Preprocessing

H, W = 11, 13
EXACT = Preprocessing(H, W)


def python_path(path):
    return images.to_module_input(images.read_image(path), H, W)


def collect(paths, batch_size=3, workers=2):
    """{position: module input} and {position: error}, checking each position comes once."""
    arrays, errors, seen = {}, {}, []
    for positions, batch, batch_errors in module_inputs.module_input_batches(
        paths, preprocessing=EXACT, batch_size=batch_size, workers=workers
    ):
        if batch is None:
            assert positions == []
        else:
            batch = np.asarray(batch)
            assert batch.shape == (len(positions), H, W, 3) and batch.dtype == np.float32
            arrays.update(zip(positions, batch))
        errors.update(batch_errors)
        seen += positions + [p for p, _ in batch_errors]
    assert sorted(seen) == list(range(len(paths)))
    return arrays, errors


def write(tmp_path, name, pixels, fmt, **kwargs):
    path = str(tmp_path / name)
    Image.fromarray(pixels).save(path, fmt, **kwargs)
    return path


def pattern(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_pixels_equal_the_python_path_for_every_format_and_orientation(tmp_path):
    paths = [
        write(tmp_path, "a.jpg", pattern(40, 30), "JPEG"),
        write(tmp_path, "b.png", pattern(9, 17, 1), "PNG"),
        write(tmp_path, "c.gif", pattern(8, 8, 2), "GIF"),
        write(tmp_path, "d.bmp", pattern(5, 7, 3), "BMP"),
        write(tmp_path, "one_pixel.png", pattern(1, 1, 4), "PNG"),
        write(tmp_path, "grey.png", pattern(6, 6, 5)[:, :, 0], "PNG"),
    ]
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        paths.append(write(tmp_path, f"phone{orientation}.jpg", pattern(12, 20, orientation), "JPEG", exif=exif))
    arrays, errors = collect(paths)
    assert errors == {}
    for position, path in enumerate(paths):
        np.testing.assert_array_equal(arrays[position], python_path(path), err_msg=path)


def test_files_tensorflow_cannot_decode_go_the_python_way(tmp_path):
    good = [write(tmp_path, f"ok{i}.png", pattern(6, 6, i), "PNG") for i in range(5)]
    tiff = str(tmp_path / "scanner.jpg")  # A TIFF by content: only Pillow reads it.
    Image.fromarray(pattern(8, 8, 9)).save(tiff, "TIFF")
    empty = str(tmp_path / "empty.jpg")
    open(empty, "wb").close()
    html = str(tmp_path / "page.jpg")
    with open(html, "w") as f:
        f.write("<html>not an image</html>")
    missing = str(tmp_path / "deleted.jpg")
    # Failures in the middle of a batch, between batches, and at the very end.
    paths = [good[0], tiff, good[1], empty, good[2], good[3], html, good[4], missing]
    arrays, errors = collect(paths, batch_size=2)
    assert sorted(arrays) == [0, 1, 2, 4, 5, 7]
    np.testing.assert_array_equal(arrays[1], python_path(tiff))
    for position in (3, 6, 8):
        with pytest.raises(images.ImageError) as raised:
            python_path(paths[position])
        assert errors[position] == str(raised.value)
    assert set(errors) == {3, 6, 8}


def test_only_failures_give_nothing_but_errors(tmp_path):
    paths = [str(tmp_path / f"gone{i}.jpg") for i in range(4)]
    arrays, errors = collect(paths, batch_size=3)
    assert arrays == {} and sorted(errors) == [0, 1, 2, 3]
    assert all("cannot read" in e for e in errors.values())


def test_batches_hold_batch_size_images_and_no_paths_gives_no_batches(tmp_path, monkeypatch):
    paths = [write(tmp_path, f"x{i}.png", pattern(5, 5, i), "PNG") for i in range(7)]
    sizes = [len(p) for p, _, _ in module_inputs.module_input_batches(paths, preprocessing=EXACT, batch_size=3)]
    assert sizes == [3, 3, 1]
    # Nothing to decode (a warm cache): no pipeline is even built.
    monkeypatch.setattr(tf.data.Dataset, "from_tensor_slices", None)
    assert list(module_inputs.module_input_batches([], preprocessing=EXACT, batch_size=3)) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="file names that are not UTF-8 exist on Linux")
def test_names_that_are_not_utf8_are_decoded_by_tensorflow_too(tmp_path):
    # A name as some cameras and old archives write it: Latin-1 bytes, surrogate-escaped by Python.
    odd = write(tmp_path, os.fsdecode(b"caf\xe9.png"), pattern(6, 6, 1), "PNG")
    paths = [write(tmp_path, "plain.png", pattern(6, 6, 2), "PNG"), odd]
    batches = list(module_inputs.module_input_batches(paths, preprocessing=EXACT, batch_size=2))
    assert [positions for positions, _, _ in batches] == [[0, 1]]
    assert isinstance(batches[0][1], tf.Tensor)  # The pipeline's, not the Python path's.
    np.testing.assert_array_equal(batches[0][1][1].numpy(), python_path(odd))
