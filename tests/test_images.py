import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from retrain.data import images
from retrain.errors import ImageError


def pattern(height=5, width=7):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt, ext", [("PNG", "png"), ("BMP", "bmp"), ("GIF", "gif"), ("WEBP", "webp")])
def test_lossless_formats_decode_to_the_same_pixels(tmp_path, fmt, ext):
    pixels = pattern()
    path = str(tmp_path / f"x.{ext}")
    image = Image.fromarray(pixels)
    if fmt == "GIF":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        expected = np.asarray(image.convert("RGB"))
        image.save(path)
    else:
        expected = pixels
        image.save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    np.testing.assert_array_equal(images.read_image(path), expected)


def test_decoding_is_by_content_not_name(tmp_path):
    path = str(tmp_path / "really_png.jpg")
    Image.fromarray(pattern()).save(path, "PNG")
    np.testing.assert_array_equal(images.read_image(path), pattern())


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_other_colour_modes_become_rgb(tmp_path, mode):
    path = str(tmp_path / "x.jpg")
    image = Image.fromarray(pattern()).convert(mode)
    image.save(path, "PNG" if mode in ("RGBA", "P") else "JPEG")
    pixels = images.read_image(path)
    assert pixels.shape == (5, 7, 3) and pixels.dtype == np.uint8


def test_jpeg_pixels_equal_tensorflow_decode_jpeg(tmp_path):
    path = str(tmp_path / "x.jpg")
    Image.fromarray(pattern(40, 30)).save(path, "JPEG")
    expected = tf.io.decode_jpeg(open(path, "rb").read(), channels=3).numpy()
    np.testing.assert_array_equal(images.read_image(path), expected)


def with_orientation(path, pixels, orientation, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    path = str(tmp_path / "phone.png")
    expected = with_orientation(path, pattern(6, 10), orientation, "PNG")
    np.testing.assert_array_equal(images.read_image(path), expected)


def test_exif_orientation_of_a_phone_jpeg(tmp_path):
    blocks = np.zeros((32, 48, 3), np.uint8)
    blocks[:16, :24] = (255, 0, 0)
    blocks[16:, 24:] = (0, 0, 255)
    path = str(tmp_path / "phone.jpg")
    expected = with_orientation(path, blocks, 6, "JPEG")
    got = images.read_image(path)
    assert got.shape == (48, 32, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 2


@pytest.mark.parametrize("content", [b"", b"<html>not an image</html>", b"\xff\xd8\xff\xe0 truncated"])
def test_broken_files_raise_image_error_naming_the_file(tmp_path, content):
    path = str(tmp_path / "bad.jpg")
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(ImageError, match="bad.jpg"):
        images.read_image(path)


def test_missing_file_raises_image_error(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        images.read_image(str(tmp_path / "missing.jpg"))


def test_resize_is_tf1_bilinear_without_half_pixel_centres():
    x = tf.constant(np.random.default_rng(1).random((1, 5, 7, 3)), tf.float32)
    ours = images.resize_bilinear_v1(x, 9, 4)
    tf1 = tf.compat.v1.image.resize_bilinear(x, [9, 4], align_corners=False, half_pixel_centers=False)
    tf2 = tf.image.resize(x, [9, 4], method="bilinear")
    np.testing.assert_array_equal(ours.numpy(), tf1.numpy())
    assert not np.allclose(ours.numpy(), tf2.numpy())


def test_module_input_is_unit_range_and_sized():
    out = images.to_module_input(pattern(), 11, 13)
    assert out.shape == (11, 13, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    # Top-left pixel is copied exactly by TF1's resize.
    np.testing.assert_allclose(out[0, 0], pattern()[0, 0] / 255.0, rtol=1e-6)


def test_graph_input_applies_mean_and_std():
    out = images.to_graph_input(pattern(), 5, 7, mean=128.0, std=128.0)
    np.testing.assert_allclose(out, (pattern().astype(np.float32) - 128.0) / 128.0, rtol=1e-6)


@pytest.mark.slow
def test_resizing_only_the_sampled_pixels_equals_the_tf1_kernel_bit_for_bit():
    """scale_orient_resize is retrain.py's convert -> orient -> ResizeBilinear, in every context."""
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (2, 3), (40, 30), (299, 299), (480, 641), (3000 // 7, 4000 // 7), (1500, 2000), (2000, 1500)]
    sizes = [(299, 299), (224, 224), (24, 24), (11, 13), (500, 40)]
    for i, (h, w) in enumerate(shapes):
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        height, width = sizes[i % len(sizes)]
        for orientation in range(1, 9):
            scaled = tf.image.convert_image_dtype(pixels, tf.float32)
            expected = images.resize_bilinear_v1(images.orient(scaled, tf.constant(orientation))[tf.newaxis],
                                                 height, width)[0].numpy()
            eager = images.scale_orient_resize(tf.constant(pixels), tf.constant(orientation), height, width)
            np.testing.assert_array_equal(eager.numpy(), expected)
            gathered = images._gather_and_resize(tf.constant(pixels), tf.constant(orientation), height, width)
            np.testing.assert_array_equal(gathered.numpy(), expected)  # The large-image way, at every size.
        # Graph mode with everything but the pixels constant: grappler's rewrites must not change a bit.
        traced = tf.function(lambda p: images.scale_orient_resize(p, tf.constant(1), height, width))
        expected = images.resize_bilinear_v1(tf.image.convert_image_dtype(pixels, tf.float32)[tf.newaxis],
                                             height, width)[0].numpy()
        np.testing.assert_array_equal(traced(tf.constant(pixels)).numpy(), expected)
        dataset = tf.data.Dataset.from_tensors(pixels).map(lambda p: images.scale_orient_resize(p, 6, height, width))
        turned = images.orient(tf.image.convert_image_dtype(pixels, tf.float32), tf.constant(6))
        np.testing.assert_array_equal(next(iter(dataset)).numpy(),
                                      images.resize_bilinear_v1(turned[tf.newaxis], height, width)[0].numpy())
