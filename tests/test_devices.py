"""Extraction across several devices gives the bottlenecks one device gives (two logical CPUs)."""

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.slow
def test_two_logical_devices_give_the_same_bottlenecks(tmp_path, image_folder, tiny_module):
    script = textwrap.dedent(f"""
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from absl import logging
        logging.set_verbosity(logging.INFO)
        import retrain
        from retrain.module import devices, hub
        assert devices.parallel_devices() == ["/device:CPU:0", "/device:CPU:1"], devices.parallel_devices()
        extractor = hub.load_feature_extractor({tiny_module!r})
        batch = np.random.default_rng(0).random((7, 24, 24, 3)).astype(np.float32)
        one = devices.split_across(extractor.extract, [])(batch)
        two = devices.split_across(extractor.extract, devices.parallel_devices())(batch)
        np.testing.assert_allclose(two, one, rtol=1e-6, atol=1e-7)
        result = retrain.run(retrain.RetrainConfig(
            image_dir={image_folder!r}, tfhub_module={tiny_module!r}, bottleneck_dir={str(tmp_path / "two")!r},
            train=retrain.TrainConfig(how_many_training_steps=5),
            output=retrain.OutputConfig(output_graph={str(tmp_path / "g.pb")!r}, output_labels={str(tmp_path / "l.txt")!r},
                                        summaries_dir="", checkpoint_path={str(tmp_path / "c")!r})))
        assert result.bottlenecks_computed == 90
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
    assert "Extraction splits each batch across 2 devices" in done.stderr

    import numpy as np
    from conftest import cache_files

    from retrain.cache import text_format
    from retrain.data import images
    from retrain.module import hub

    single = hub.load_feature_extractor(tiny_module)
    for path in sorted(cache_files(tmp_path / "two"))[:10]:
        image = path.replace(str(tmp_path / "two"), image_folder).rsplit("_", 1)[0]
        pixels = images.to_module_input(images.read_image(image), 24, 24)
        expected = single.extract(pixels[np.newaxis]).numpy()[0]
        np.testing.assert_allclose(text_format.read_cached(path, 32), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fine_tuning_split_across_two_devices_takes_the_same_step(tmp_path):
    module = str(tmp_path / "tunable")
    script = textwrap.dedent(f"""
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from retrain import testing
        from retrain.config import FineTuneConfig
        from retrain.module import hub, tuning
        from retrain.training.fine_tune import Tuner
        extractor = hub.load_feature_extractor(testing.build_tunable_module({module!r}))
        rng = np.random.default_rng(0)
        head = rng.normal(size=(16, 3)).astype(np.float32), np.zeros(3, np.float32)
        images = tf.constant(rng.random((7, 24, 24, 3)).astype(np.float32))
        labels = tf.constant(rng.integers(0, 3, 7))
        tuners = [Tuner(tuning.tunable_copy(extractor), *head, FineTuneConfig(learning_rate=0.1), 1) for _ in "ab"]
        tuners[0].devices = []
        assert tuners[1].devices == ["/device:CPU:0", "/device:CPU:1"], tuners[1].devices
        losses = [float(tuner._train_step(images, labels)[0]) for tuner in tuners]
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
        for one, two in zip(tuners[0].variables, tuners[1].variables):
            np.testing.assert_allclose(one.numpy(), two.numpy(), rtol=1e-4, atol=1e-6)
        assert not np.allclose(tuners[0].variables[0].numpy(), tuning.tunable_copy(extractor).variables[0].numpy())
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
