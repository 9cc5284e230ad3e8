"""The folders users really have, Ctrl-C, and failures that must not damage anything."""

import os
import pathlib
import signal
import time

import numpy as np
import pytest
from conftest import cache_files, make_split_safe_folder, run_tool, start_tool
from PIL import Image

from retrain import testing
from retrain.cache import layout, text_format


def save(image, path, *args, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, *args, **kwargs)


@pytest.fixture(scope="module")
def trap_folder(tmp_path_factory):
    """Every kind of file a real folder holds, good and bad."""
    root = pathlib.Path(make_split_safe_folder(tmp_path_factory.mktemp("trap"), "photos", class_names=("cats", "dogs"),
                                               images_per_class=20, seed=4))
    rng = np.random.default_rng(0)
    red = lambda w=40, h=30: testing.synthetic_image(rng, testing.PALETTE[0], min(w, h), max(w, h))  # noqa: E731
    cats = root / "cats"
    exif = Image.Exif()
    exif[0x0112] = 6
    save(red(), str(cats / "phone photo.jpg"), "JPEG", exif=exif)
    save(red(), str(cats / "really_a_png.jpg"), "PNG")
    save(red(), str(cats / "UPPER.JPG"), "JPEG")
    save(red(), str(cats / "mixed.Jpeg"), "JPEG")
    save(red().convert("L"), str(cats / "grey.png"), "PNG")
    save(red().convert("CMYK"), str(cats / "cmyk.jpg"), "JPEG")
    save(red().convert("P"), str(cats / "palette.png"), "PNG")
    save(red().convert("RGBA"), str(cats / "alpha.png"), "PNG")
    frames = [red(), red()]
    frames[0].save(str(cats / "animated.gif"), save_all=True, append_images=frames[1:])
    save(red(), str(cats / "old.bmp"), "BMP")
    save(red(), str(cats / "modern.webp"), "WEBP")
    save(Image.new("RGB", (1, 1), (200, 10, 10)), str(cats / "tiny.png"), "PNG")
    save(Image.new("RGB", (4000, 3000), (200, 10, 10)), str(cats / "huge.jpg"), "JPEG")
    save(red(), str(cats / "été à Zürich.jpg"), "JPEG")
    save(red(), str(cats / "holiday" / "nested.jpg"), "JPEG")
    (cats / "zero.jpg").write_bytes(b"")
    (cats / "download.jpg").write_bytes(b"<html><body>404 Not Found</body></html>")
    good = open(cats / "UPPER.JPG", "rb").read()
    (cats / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (cats / "notes.txt").write_text("a stray text file")
    (cats / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (cats / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "empty_class").mkdir()
    return str(root)


BROKEN = ("zero.jpg", "download.jpg", "truncated.jpg")


def args_for(tmp_path, image_dir, module, *extra):
    return [
        f"--image_dir={image_dir}", f"--tfhub_module={module}", f"--bottleneck_dir={tmp_path}/bn",
        f"--output_graph={tmp_path}/out/graph.pb", f"--output_labels={tmp_path}/out/labels.txt",
        f"--summaries_dir={tmp_path}/logs", f"--checkpoint_path={tmp_path}/ckpt/c",
        "--how_many_training_steps=30", *extra,
    ]


@pytest.mark.slow
def test_trap_folder_runs_through_and_reports_what_it_skipped(tmp_path, trap_folder, tiny_module):
    result = run_tool("retrain", *args_for(tmp_path, trap_folder, tiny_module))
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert "Traceback" not in log
    assert "Skipped 3 file(s) that are not readable images" in log
    summary = log.split("Skipped 3 file(s)")[1]
    for name in BROKEN:
        assert os.path.join(trap_folder, "cats", name) in summary
    for quiet in ("notes.txt", ".DS_Store", "Thumbs.db"):
        assert quiet not in log
    assert "Looking for images in 'empty_class'" in log and "No files found" in log
    assert open(tmp_path / "out" / "labels.txt").read() == "cats\ndogs\n"
    cached = {os.path.basename(p) for p in cache_files(tmp_path / "bn")}
    module = layout.mangle_module_name(tiny_module)
    for name in ("été à Zürich.jpg", "phone photo.jpg", "huge.jpg", "modern.webp", "animated.gif", "cmyk.jpg"):
        assert f"{name}_{module}.txt" in cached
    assert f"nested.jpg_{module}.txt" in cached
    assert not any(name.startswith(b) for name in cached for b in BROKEN)
    assert all(n.endswith(".txt") for n in cached)


def test_exif_rotation_stands_the_image_upright(tmp_path):
    from retrain.data import images

    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:, :30] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(str(tmp_path / "rotated.png"), exif=exif)
    upright = images.read_image(str(tmp_path / "rotated.png"))
    assert upright.shape == (60, 30, 3) and upright[0, 0, 0] == 255 and upright[-1, 0, 0] == 0


def write_images(root, count, prefix=""):
    rng = np.random.default_rng(len(prefix))
    for cls, colour in (("a", testing.PALETTE[0]), ("b", testing.PALETTE[2])):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for i in range(count):
            testing.synthetic_image(rng, colour, 24, 32).save(os.path.join(root, cls, f"{prefix}{cls}{i:04d}.png"))


@pytest.mark.slow
def test_ctrl_c_during_caching_keeps_outputs_and_a_complete_cache(tmp_path, tiny_module):
    image_dir = str(tmp_path / "imgs")
    write_images(image_dir, 20)
    args = args_for(tmp_path, image_dir, tiny_module, "--bottleneck_batch_size=1")
    first = run_tool("retrain", *args)
    assert first.returncode == 0, first.stderr
    graph_before = open(tmp_path / "out" / "graph.pb", "rb").read()

    write_images(image_dir, 680, prefix="new_")  # 1360 new images to cache.
    process = start_tool("retrain", *args)
    cache = tmp_path / "bn"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if len(cache_files(cache)) > 80:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("retrain: Interrupted: ") and "run the same command again to resume" in last
    cached_count = int(last.split("Interrupted: ")[1].split(" of ")[0])
    assert 40 < cached_count < 1400

    files = cache_files(cache)
    assert len(files) == cached_count and all(f.endswith(".txt") for f in files)
    for path in files:
        text_format.parse_bottleneck(open(path).read(), 32)
    assert open(tmp_path / "out" / "graph.pb", "rb").read() == graph_before
    # The records were saved too, complete: one per cache file, each naming its image's content.
    from retrain.cache import records as cache_records

    records = cache_records.CacheRecords(str(cache), layout.mangle_module_name(tiny_module), "").load()
    assert all(records.get(path) is not None for path in files)
    assert not [n for _, _, names in os.walk(cache) for n in names if n.endswith(".tmp")]

    resumed = run_tool("retrain", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Computing {1400 - cached_count} bottlenecks ({cached_count} found in the cache)" in resumed.stderr


@pytest.mark.slow
def test_debug_verbosity_shows_a_traceback_for_bug_reports(tmp_path, tiny_module):
    result = run_tool("retrain", *args_for(tmp_path, tmp_path / "missing", tiny_module), "--logging_verbosity=DEBUG")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "not found" in result.stderr


@pytest.mark.slow
def test_ctrl_c_during_training(tmp_path, image_folder, tiny_module):
    args = args_for(tmp_path, image_folder, tiny_module, "--how_many_training_steps=100000000",
                    "--eval_step_interval=1000")
    process = start_tool("retrain", *args)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if ": Step 0: Validation accuracy" in line:
            time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "retrain: Interrupted during training" in rest and "Traceback" not in rest
    assert not (tmp_path / "out" / "graph.pb").exists()
