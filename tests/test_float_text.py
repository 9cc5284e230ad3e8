"""The cache's text: numpy's str() of each float32, with or without the compiled writer."""

import numpy as np
import pytest

from retrain.cache import fill, text_format

# Where the two writers' rules differ or numpy is particular: signed zeros, non-finite
# values, the ends of positional notation, powers of two, subnormals, the largest float32.
_EDGES = np.array(
    [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38, 9.9999997e-05, 1e-4,
     1.001e-4, 1.0009e-4, 998999.9, 999000, 999999.9, 1e6, 1e16, 0.5, 2.0, 2.0**-10, 2.0**-14, 1 / 3, 1e-8,
     1.5e-5, 123456.79, -2.5, 7.0, 100.0],
    np.float32,
)


def _numpy_str(values):
    return ",".join(str(value) for value in np.asarray(values, np.float32).ravel())


def _samples(rng):
    yield _EDGES
    yield rng.integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32).view(np.float32)  # Every exponent.
    yield np.maximum(rng.normal(0.3, 0.6, 20_000), 0).astype(np.float32)  # ReLU-like bottlenecks, many zeros.
    yield (np.exp(rng.uniform(-12, 16, 20_000)) * rng.choice([-1, 1], 20_000)).astype(np.float32)
    yield (rng.integers(-3000, 3000, 20_000) / rng.choice([1, 2, 8, 10, 1000, 1024], 20_000)).astype(np.float32)


def test_numpy_path_is_str_of_each_float32():
    values = np.array([1 / 3, 1e-8, -2.5, 0.0, 123456.79], np.float64)
    assert text_format.format_float32(values, compiled=False) == "0.33333334,1e-08,-2.5,0.0,123456.79"
    assert text_format.format_float32(np.zeros(0, np.float32)) == ""


def test_compiled_writer_writes_numpys_text_for_every_kind_of_value():
    pytest.importorskip("orjson", reason='the compiled writer is the "fast" extra')
    assert text_format.orjson is not None
    for values in _samples(np.random.default_rng(0)):
        expected = _numpy_str(values)
        assert text_format.format_float32(values) == expected
        assert text_format.format_float32(values, compiled=False) == expected


def test_cache_text_reads_back_bit_for_bit():
    values = np.concatenate([v[np.isfinite(v)] for v in _samples(np.random.default_rng(1))])
    parsed = text_format.parse_bottleneck(text_format.format_bottleneck(values), values.size)
    np.testing.assert_array_equal(parsed.view(np.uint32), values.view(np.uint32))


def test_an_orjson_that_prints_other_text_is_not_used(monkeypatch):
    class PrintsFloat64:  # As a writer that printed the float64 value would.
        OPT_SERIALIZE_NUMPY = 0

        @staticmethod
        def dumps(vector, option=0):
            return ("[" + ",".join(repr(float(v)) for v in vector) + "]").encode()

    monkeypatch.setattr(text_format, "orjson", PrintsFloat64)
    assert not text_format._compiled_agrees()


def test_without_the_extra_a_run_that_computes_names_the_install_once(tmp_path, caplog, monkeypatch):
    from retrain.data import image_lists

    caplog.set_level("INFO", logger="absl")
    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "imgs" / name / f"{name}{i}.jpg").write_text("x")
    lists = image_lists.create_image_lists(str(tmp_path / "imgs"), 0, 0)

    def compute(cache):
        return fill.load_or_compute(
            image_lists=lists, bottleneck_dir=str(tmp_path / cache), module_handle="m", dim=2,
            decode=lambda paths: iter([(list(range(len(paths))), np.zeros((len(paths), 1)), [])]),
            extract=lambda batch: np.full((len(batch), 2), 0.5, np.float32),
        )

    monkeypatch.setattr(text_format, "orjson", None)
    compute("numpy_cache")
    hints = [m for m in caplog.messages if 'pip install "retrain[fast]"' in m]
    assert len(hints) == 1
    caplog.clear()
    compute("numpy_cache")  # Nothing computed: nothing to say.
    assert not any("retrain[fast]" in m for m in caplog.messages)
    monkeypatch.setattr(text_format, "orjson", pytest.importorskip("orjson"))
    caplog.clear()
    compute("compiled_cache")
    assert not any("retrain[fast]" in m for m in caplog.messages)
