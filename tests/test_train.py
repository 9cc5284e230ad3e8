import numpy as np
import pytest
import tensorflow as tf

from retrain.cache.sets import BottleneckSet
from retrain.config import TrainConfig
from retrain.evaluation import held_out
from retrain.training import trainer
from retrain.training.sampler import ClassBalancedSampler


def make_sets(learnable=True, per_class=(40, 40, 40), dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(per_class), dim)) * 3
    sets = {}
    for category, share in (("training", 1.0), ("validation", 0.25), ("testing", 0.5)):
        features, labels = [], []
        for label, count in enumerate(per_class):
            n = int(count * share)
            features.append(centres[label] + rng.normal(size=(n, dim)))
            labels += [label] * n
        labels = np.array(labels, np.int64)
        if not learnable:
            labels = rng.permutation(labels)
        sets[category] = BottleneckSet(
            features=np.concatenate(features).astype(np.float32),
            labels=labels,
            image_paths=[f"{category}/{i}.jpg" for i in range(len(labels))],
        )
    return sets


CONFIG = TrainConfig(how_many_training_steps=300, learning_rate=0.1, eval_step_interval=50)


class LayerOnly:
    """The trained layer as a model: logits of bottlenecks (what held_out.final_test asks of a model)."""

    def __init__(self, result, class_count):
        self.result = result
        self.labels = [f"class {i}" for i in range(class_count)]

    def logits(self, images):
        return images.features @ self.result.weights + self.result.biases


def train(*, sets, class_count, train_config, seed, **options):
    """trainer.train on the sets, then the final test as a run does it: (TrainResult, TestResult)."""
    result = trainer.train(examples=sets["training"], validation=sets["validation"], testing=sets["testing"],
                           class_count=class_count, train_config=train_config, seed=seed, **options)
    return result, held_out.final_test(LayerOnly(result, class_count), sets["testing"], result.test_rows)


@pytest.mark.parametrize("steps, interval, store, evaluated, stored", [
    (25, 10, 0, [0, 10, 20, 24], []),
    (25, 10, 7, [0, 10, 20, 24], [7, 14, 21]),
    (1, 10, 0, [0], []),
    (1200, 10, 0, list(range(0, 1200, 10)) + [1199], []),  # Several blocks.
])
def test_evaluations_and_stores_at_retrain_py_steps(caplog, steps, interval, store, evaluated, stored):
    import re

    caplog.set_level("INFO", logger="absl")
    calls = []
    config = TrainConfig(how_many_training_steps=steps, learning_rate=0.1, eval_step_interval=interval, random_seed=0)
    train(sets=make_sets(True), class_count=3, train_config=config, seed=0,
          intermediate_store_frequency=store, on_intermediate=lambda step, w, b: calls.append(step))
    logged = [int(m) for m in re.findall(r"Step (\d+): Train accuracy", caplog.text)]
    assert logged == evaluated
    assert len(re.findall(r"Step \d+: Validation accuracy = [\d.]+% \(N=100\)", caplog.text)) == len(evaluated)
    assert calls == stored
    assert all(s in trainer.training_schedule(steps, interval, store) for s in stored + [steps - 1])


def test_learnable_data_reaches_high_test_accuracy():
    result, test = train(sets=make_sets(True), class_count=3, train_config=CONFIG, seed=1)
    assert test.accuracy > 0.95
    assert test.count == 60
    assert result.weights.shape == (16, 3) and result.biases.shape == (3,)


def test_random_labels_stay_near_chance():
    _, test = train(sets=make_sets(False), class_count=3, train_config=CONFIG, seed=1)
    assert test.accuracy < 0.6


def test_same_seed_same_weights_other_seed_differs():
    sets = make_sets(True)
    a, _ = train(sets=sets, class_count=3, train_config=CONFIG, seed=5)
    b, _ = train(sets=sets, class_count=3, train_config=CONFIG, seed=5)
    c, _ = train(sets=sets, class_count=3, train_config=CONFIG, seed=6)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.allclose(a.weights, c.weights)


def test_logs_the_three_step_lines_and_misclassified(caplog):
    caplog.set_level("INFO", logger="absl")
    config = TrainConfig(how_many_training_steps=12, eval_step_interval=5, validation_batch_size=-1)
    _, test = train(sets=make_sets(False), class_count=3, train_config=config, seed=1)
    steps = [line for line in caplog.messages if ": Step " in line]
    assert [s.split(": Step ")[1].split(":")[0] for s in steps[::3]] == ["0", "5", "10", "11"]
    assert "Train accuracy = " in steps[0] and "Cross entropy = " in steps[1]
    assert steps[2].endswith("(N=30)")  # -1: the whole validation set.
    assert len(test.misclassified) == round(test.count * (1 - test.accuracy))


def test_sampling_is_class_balanced():
    bset = make_sets(True, per_class=(90, 10))["training"]
    sampler = ClassBalancedSampler(bset.labels, 2)
    rows = sampler.rows(tf.random.Generator.from_seed(0), 4000).numpy()
    share = np.mean(bset.labels[rows] == 1)
    assert 0.45 < share < 0.55


def test_test_batch_size_samples_that_many():
    config = TrainConfig(how_many_training_steps=5, test_batch_size=7)
    _, test = train(sets=make_sets(True), class_count=3, train_config=config, seed=1)
    assert test.count == 7


def test_class_without_validation_or_test_images_is_left_out():
    sets = make_sets(True, per_class=(40, 40, 2))  # class 2: 0 validation, 1 test image
    sets["validation"].labels  # noqa: B018
    assert 2 not in set(sets["validation"].labels.tolist())
    _, test = train(sets=sets, class_count=3, train_config=CONFIG, seed=1)
    assert test.accuracy is not None


def test_no_test_images_gives_no_accuracy():
    sets = make_sets(True)
    sets["testing"] = BottleneckSet(np.zeros((0, 16), np.float32), np.zeros(0, np.int64), [])
    _, test = train(sets=sets, class_count=3, train_config=TrainConfig(how_many_training_steps=3), seed=1)
    assert test.accuracy is None and test.count == 0


def test_summaries_written(tmp_path):
    config = TrainConfig(how_many_training_steps=20, eval_step_interval=10)
    train(sets=make_sets(True), class_count=3, train_config=config, seed=1, summaries_dir=str(tmp_path))
    # Read as TensorBoard reads them (its plugin accumulator converts older summary kinds).
    from tensorboard.backend.event_processing import plugin_event_accumulator

    tags, histograms = {}, {}
    for name in ("train", "validation"):
        acc = plugin_event_accumulator.EventAccumulator(str(tmp_path / name), size_guidance={"tensors": 0})
        acc.Reload()
        tags[name] = set(acc.Tags()["tensors"])
        found = acc.PluginTagToContent("histograms") if "histograms" in acc.ActivePlugins() else {}
        histograms[name] = {tag: acc.Tensors(tag) for tag in found}
    assert {"cross_entropy", "accuracy", "final_retrain_ops/weights/summaries/mean",
            "final_retrain_ops/weights/summaries/stddev", "final_retrain_ops/biases/summaries/max",
            "final_retrain_ops/biases/summaries/min", "final_retrain_ops/weights/summaries/histogram",
            "final_retrain_ops/biases/summaries/histogram"} <= tags["train"]
    assert {"final_retrain_ops/weights/summaries/histogram", "final_retrain_ops/biases/summaries/histogram",
            "final_retrain_ops/Wx_plus_b/pre_activations", "final_retrain_ops/activations"} == set(histograms["train"])
    weights = histograms["train"]["final_retrain_ops/weights/summaries/histogram"]
    assert [event.step for event in weights] == [0, 10, 19]
    buckets = tf.make_ndarray(weights[-1].tensor_proto)  # [k, 3]: left edge, right edge, count.
    assert buckets[:, 2].sum() == 16 * 3  # Every weight of the [16, 3] layer counted once.
    assert {"cross_entropy", "accuracy"} <= tags["validation"]
    assert not [tag for names in tags.values() for tag in names if tag.startswith("while")]


def test_intermediate_callback_gets_steps():
    seen = []
    config = TrainConfig(how_many_training_steps=25, eval_step_interval=10)
    train(
        sets=make_sets(True), class_count=3, train_config=config, seed=1,
        intermediate_store_frequency=10, on_intermediate=lambda step, w, b: seen.append((step, w.shape)),
    )
    assert seen == [(10, (16, 3)), (20, (16, 3))]
