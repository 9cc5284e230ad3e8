import os

import numpy as np
from conftest import cache_files, call_command, frozen_graph_scores, quick_config

from retrain.config import DistortionConfig
from retrain.data import images
from retrain.data.distortions import Distorter, copy_seed, settings_tag

H = W = 12


def picture():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)


def test_no_distortion_is_the_plain_module_input():
    out = Distorter(DistortionConfig(), H, W)(picture(), (1, 2))
    np.testing.assert_allclose(out, images.to_module_input(picture(), H, W), rtol=1e-6)


def test_flip_is_a_mirror_half_of_the_time():
    distorter = Distorter(DistortionConfig(flip_left_right=True), H, W)
    plain = images.to_module_input(picture(), H, W)
    flipped = 0
    for seed in range(40):
        out = distorter(picture(), (seed, 0))
        if np.allclose(out, plain[:, ::-1], rtol=1e-6):
            flipped += 1
        else:
            np.testing.assert_allclose(out, plain, rtol=1e-6)
    assert 10 < flipped < 30


def test_brightness_multiplies_by_one_factor_in_range_without_clipping():
    distorter = Distorter(DistortionConfig(random_brightness=50), H, W)
    plain = images.to_module_input(picture(), H, W)
    factors = []
    for seed in range(20):
        out = distorter(picture(), (seed, 7))
        ratio = out[plain > 0.05] / plain[plain > 0.05]
        assert np.ptp(ratio) < 1e-4
        factors.append(ratio.mean())
    assert min(factors) >= 0.5 and max(factors) < 1.5 and np.ptp(factors) > 0.3
    assert max(distorter(picture(), (s, 7)).max() for s in range(20)) > 1.0  # not clipped


def window_of(out, big):
    """True if out is a H x W window of big."""
    for y in range(big.shape[0] - H + 1):
        for x in range(big.shape[1] - W + 1):
            if np.allclose(big[y:y + H, x:x + W], out, rtol=1e-5, atol=1e-6):
                return True
    return False


def test_crop_zooms_in_by_the_margin():
    # crop 50: the image is resized to 1.5 x the module size and a window is cut.
    distorter = Distorter(DistortionConfig(random_crop=50), H, W)
    big = images.to_module_input(picture(), 18, 18)
    for seed in range(5):
        assert window_of(distorter(picture(), (seed, 1)), big)


def test_scale_zooms_in_by_a_random_factor():
    distorter = Distorter(DistortionConfig(random_scale=100), H, W)
    candidates = {size: images.to_module_input(picture(), size, size) for size in range(H, 2 * H)}
    sizes = set()
    for seed in range(12):
        out = distorter(picture(), (seed, 3))
        matching = [size for size, big in candidates.items() if window_of(out, big)]
        assert matching
        sizes.add(matching[0])
    assert len(sizes) > 2


def test_copy_seeds_and_tags_are_stable_and_distinct():
    assert copy_seed("a/x.jpg", 1) == copy_seed("a/x.jpg", 1) != copy_seed("a/x.jpg", 2)
    assert settings_tag(DistortionConfig(random_crop=10)) != settings_tag(DistortionConfig(random_crop=20))
    assert settings_tag(DistortionConfig(flip_left_right=True)) == "distorted-flip1-crop0-scale0-brightness0"


def run(tmp_path, image_folder, module, name, seed=None, **distortions):
    """A retrain run in-process: (RetrainResult, its output folder)."""
    import retrain

    out = tmp_path / name
    config = quick_config(out, image_folder, module, steps=20, seed=seed, testing_percentage=10,
                          bottleneck_dir=tmp_path / "bn", train={"train_batch_size": 20},
                          distortions=DistortionConfig(**distortions), summaries_dir=str(out / "logs"))
    return retrain.run(config), out


def graph_scores(graph_path, image_folder):
    paths = [os.path.join(image_folder, "green", f"green_{i:03d}.jpg") for i in range(4)]
    return frozen_graph_scores(graph_path, paths)[0]


DISTORT = dict(flip_left_right=True, random_crop=20, random_scale=20, random_brightness=20)


def test_distorted_run_seeded_repeats_unseeded_differs(tmp_path, image_folder, tiny_module, caplog):
    caplog.set_level("INFO", logger="absl")
    a, out_a = run(tmp_path, image_folder, tiny_module, "a", seed=11, **DISTORT)
    assert "Distorting training images at every step" in caplog.text and a.test_accuracy is not None
    b, out_b = run(tmp_path, image_folder, tiny_module, "b", seed=11, **DISTORT)
    np.testing.assert_allclose(graph_scores(out_a / "graph.pb", image_folder),
                               graph_scores(out_b / "graph.pb", image_folder), rtol=1e-5, atol=1e-7)
    c, out_c = run(tmp_path, image_folder, tiny_module, "c", **DISTORT)
    d, out_d = run(tmp_path, image_folder, tiny_module, "d", **DISTORT)
    assert c.seed != d.seed
    assert not np.allclose(graph_scores(out_c / "graph.pb", image_folder),
                           graph_scores(out_d / "graph.pb", image_folder), rtol=1e-5, atol=1e-7)


def test_undistorted_seeded_runs_repeat(tmp_path, image_folder, tiny_module):
    _, out_a = run(tmp_path, image_folder, tiny_module, "a", seed=4)
    _, out_b = run(tmp_path, image_folder, tiny_module, "b", seed=4)
    np.testing.assert_allclose(graph_scores(out_a / "graph.pb", image_folder),
                               graph_scores(out_b / "graph.pb", image_folder), rtol=1e-5, atol=1e-7)


def count_copies(root):
    return sorted(os.path.basename(p) for p in cache_files(root) if "-copy" in p)


def test_distorted_copies_are_cached_reused_and_not_shared_across_settings(tmp_path, image_folder, tiny_module):
    first, _ = run(tmp_path, image_folder, tiny_module, "a", random_crop=20, distorted_copies=2)
    copies = count_copies(tmp_path / "bn")
    training_images = len(copies) // 2
    assert training_images > 40
    assert all("distorted-flip0-crop20-scale0-brightness0-copy" in n for n in copies)
    assert first.bottlenecks_computed == 90 - training_images + 2 * training_images
    again, _ = run(tmp_path, image_folder, tiny_module, "b", random_crop=20, distorted_copies=2)
    assert again.bottlenecks_computed == 0  # Everything, copies included, came from the cache.
    other, _ = run(tmp_path, image_folder, tiny_module, "c", random_crop=30, distorted_copies=2)
    assert other.bottlenecks_computed == 2 * training_images
    assert len(count_copies(tmp_path / "bn")) == 4 * training_images


def test_distorted_copies_needs_a_distortion():
    status, _, stderr = call_command("retrain", "--image_dir=.", "--distorted_copies=2")
    assert status == 2 and "--distorted_copies needs a distortion" in stderr
