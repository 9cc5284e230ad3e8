"""Untrusted models and hostile folders: nothing a model file smuggles in is run, and odd files hang nothing."""

import os
import signal
import socket

import hostile_models
import pytest
import tensorflow as tf
from conftest import call_command, make_split_safe_folder, quick_config

import retrain
from retrain import testing
from retrain.errors import UserError
from retrain.module import scan
from retrain.module.safe_ops import SAFE_OPS
from retrain.runtime import tflite_runtime

HOSTILE = {
    "frozen graph, WriteFile as a control dependency": (
        "graph.pb", lambda path, target: hostile_models.frozen_graph_writing_a_file(path, target), "WriteFile"),
    "SavedModel, WriteFile in a tf.cond branch": (
        "cond", hostile_models.saved_model_writing_in_a_cond_branch, "WriteFile"),
    "SavedModel, MatchingFiles printed to a file:// stream": (
        "listing", lambda path, target: hostile_models.saved_model_listing_a_folder(path, target, "/etc"),
        "MatchingFiles"),
    "SavedModel, a resource initializer that writes": (
        "initializer", hostile_models.saved_model_writing_while_loading, "WriteFile"),
}


@pytest.fixture
def labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("red\ngreen\nblue\n")
    return str(path)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_label_image_refuses_every_hostile_model_and_nothing_is_written(tmp_path, image_folder, labels, kind):
    name, build, op = HOSTILE[kind]
    target = tmp_path / "written.txt"
    model = build(str(tmp_path / name), str(target))
    image = os.path.join(image_folder, "green", "green_000.jpg")
    status, stdout, stderr = call_command("label-image", f"--graph={model}", f"--labels={labels}", f"--image={image}")
    assert status == 1 and stdout == ""
    assert f"Refusing to load {model}" in stderr and op in stderr and "--allow_unsafe_ops" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not target.exists()


def test_allow_unsafe_ops_runs_a_model_one_trusts(tmp_path, image_folder, labels):
    target = tmp_path / "written.txt"
    model = hostile_models.saved_model_writing_in_a_cond_branch(str(tmp_path / "cond"), str(target))
    image = os.path.join(image_folder, "green", "green_000.jpg")
    status, stdout, _ = call_command("label-image", f"--graph={model}", f"--labels={labels}", f"--image={image}",
                                     "--allow_unsafe_ops")
    assert status == 0 and stdout.splitlines()[0].startswith("green ")
    assert target.exists()  # What the flag lets through does run: it is no sandbox.


def test_retrain_refuses_a_module_that_writes_while_loading(tmp_path, image_folder):
    target = tmp_path / "written.txt"
    module = hostile_models.saved_model_writing_while_loading(str(tmp_path / "module"), str(target))
    with pytest.raises(scan.UnsafeModelError, match="WriteFile \\(function \"__inference__initialize"):
        retrain.run(quick_config(tmp_path / "out", image_folder, module))
    assert not target.exists() and not (tmp_path / "out" / "bottlenecks").exists()
    status, _, stderr = call_command("retrain", f"--image_dir={image_folder}", f"--tfhub_module={module}",
                                     f"--bottleneck_dir={tmp_path}/cache", f"--output_graph={tmp_path}/g.pb",
                                     f"--output_labels={tmp_path}/l.txt", "--summaries_dir=",
                                     f"--checkpoint_path={tmp_path}/c")
    assert status == 1 and "Refusing to load" in stderr and not target.exists()


def test_the_saver_is_exempt_only_for_its_own_files(tmp_path):
    """SaveV2 of the saver passes; the same op elsewhere, on a path of its own, does not."""
    class Leaky(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = tf.Variable(tf.ones([3]))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            save = tf.raw_ops.SaveV2(prefix=str(tmp_path / "stolen"), tensor_names=["x"], shape_and_slices=[""],
                                     tensors=[x])
            with tf.control_dependencies([save]):
                return x * self.weights

    tf.saved_model.save(Leaky(), str(tmp_path / "leaky"))
    with pytest.raises(scan.UnsafeModelError) as raised:
        scan.check_saved_model(str(tmp_path / "leaky"))
    message = str(raised.value)
    assert "SaveV2 (function \"__inference___call__" in message
    assert "__inference__traced_save" not in message and "RestoreV2" not in message


def test_a_tflite_model_with_a_tensorflow_file_op_is_refused(trained_model):
    content = open(trained_model["tflite"], "rb").read()
    scan.check_tflite(content, "ours")  # Builtins only: passes.
    classes = tflite_runtime.schema()
    model = classes.ModelT.InitFromObj(classes.Model.GetRootAs(bytearray(content), 0))
    code = classes.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = 32  # CUSTOM.
    code.customCode = "FlexWriteFile"
    model.operatorCodes.append(code)
    import flatbuffers

    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(scan.UnsafeModelError, match="FlexWriteFile"):
        scan.check_tflite(bytes(builder.Output()), "flex")


def test_the_projects_own_outputs_and_test_modules_pass(tmp_path, trained_model, tiny_module):
    checked = []
    for folder in (tiny_module, trained_model["saved_model"], testing.build_tiny_tf1_module(str(tmp_path / "tf1")),
                   testing.build_tunable_module(str(tmp_path / "tunable"))):
        scan.check_saved_model(folder)
        checked.append(folder)
    for path in (trained_model["graph"], testing.build_legacy_inception_graph(str(tmp_path / "legacy.pb"))):
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(open(path, "rb").read())
        assert scan.graph_findings(graph_def) == []
        checked.append(path)
    scan.check_tflite(open(trained_model["tflite"], "rb").read(), "tflite")
    assert len(checked) == 6


@pytest.mark.slow
@pytest.mark.parametrize("application, size, top", [
    ("InceptionV3", 299, False), ("MobileNetV3Small", 224, False), ("EfficientNetV2B0", 224, False),
    ("EfficientNetB0", 224, True),
])
def test_stand_ins_of_common_modules_pass(tmp_path, application, size, top):
    """Random-weight Keras applications saved as TF-Hub feature vectors (and a classifier): the op
    families of tfhub.dev's Inception, MobileNet and EfficientNet modules."""
    path = str(tmp_path / application)
    if top:
        network = getattr(tf.keras.applications, application)(weights=None, input_shape=(size, size, 3))
        module = tf.train.Checkpoint(network=network)
        module.__call__ = tf.function(lambda images: network(images * 255.0),
                                      input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        tf.saved_model.save(module, path)
    else:
        testing.build_keras_module(path, application, size, reusable=True)
    scan.check_saved_model(path)


def test_every_saved_op_family_we_need_is_in_the_allowlist():
    for op in ("Conv2D", "DepthwiseConv2dNative", "FusedBatchNormV3", "StatefulPartitionedCall", "VarHandleOp",
               "ReadVariableOp", "If", "While", "DecodeJpeg", "ResizeBilinear", "Softmax", "StatelessRandomUniformV2"):
        assert op in SAFE_OPS, op
    for op in ("WriteFile", "ReadFile", "MatchingFiles", "PrintV2", "SaveV2", "RestoreV2", "PyFunc", "EagerPyFunc",
               "DecodeProtoV2", "TFRecordDataset", "ImmutableConst", "InitializeTableFromTextFileV2", "DebugIdentityV2",
               "WriteSummary", "Send", "Recv", "CollectiveReduceV2", "SleepDataset", "RemoteCall", "Abort"):
        assert op not in SAFE_OPS, op


def test_a_tampered_cached_frozen_module_is_frozen_anew(tmp_path, image_folder, tiny_module, caplog):
    first = retrain.run(quick_config(tmp_path / "a", image_folder, tiny_module, bottleneck_dir=tmp_path / "cache"))
    frozen_dir = tmp_path / "cache" / ".retrain" / "frozen"
    (cached,) = list(frozen_dir.iterdir())
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(cached.read_bytes())
    graph_def.node.add(name="planted", op="WriteFile", input=["Placeholder", "Placeholder"])
    cached.write_bytes(graph_def.SerializeToString())
    caplog.set_level("WARNING", logger="absl")
    second = retrain.run(quick_config(tmp_path / "b", image_folder, tiny_module, bottleneck_dir=tmp_path / "cache"))
    assert "holds operations that reach outside the model; freezing the module anew" in caplog.text
    assert (tmp_path / "a" / "graph.pb").read_bytes() == (tmp_path / "b" / "graph.pb").read_bytes()
    assert first.test_accuracy == second.test_accuracy


class _Timeout(Exception):
    pass


def _raise_timeout(*_):
    raise _Timeout()


def test_fifos_sockets_broken_links_and_link_loops_neither_hang_nor_stop_a_run(tmp_path, tiny_module, caplog):
    folder = make_split_safe_folder(tmp_path, "images", class_names=("cat", "dog"), images_per_class=20)
    os.mkfifo(os.path.join(folder, "cat", "pipe.jpg"))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.path.join(folder, "cat", "socket.png"))
    os.symlink("/nonexistent/photo.jpg", os.path.join(folder, "dog", "broken.jpg"))
    os.symlink(os.path.join(folder, "dog"), os.path.join(folder, "dog", "loop"))
    os.symlink("/dev/zero", os.path.join(folder, "dog", "endless.jpg"))
    caplog.set_level("WARNING", logger="absl")
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.alarm(120)
    try:
        result = retrain.run(quick_config(tmp_path / "out", folder, tiny_module))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        listener.close()
    assert result.test_accuracy is not None
    for name, why in (("pipe.jpg", "a FIFO"), ("socket.png", "a socket"), ("endless.jpg", "a character device"),
                      ("broken.jpg", "cannot be read")):
        assert any(name in line and why in line for line in caplog.messages), name
    assert not any("loop" in path for path in result.model.representative_paths)


def test_label_image_does_not_open_a_fifo_named_directly(tmp_path, trained_model):
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    status, _, stderr = call_command("label-image", f"--graph={trained_model['graph']}",
                                     f"--labels={trained_model['labels']}", f"--image={fifo}")
    assert status == 1 and "is a FIFO (named pipe), not a file; it is not opened" in stderr


def test_an_unreadable_image_is_skipped_with_its_reason(tmp_path, tiny_module):
    """A file its reader may not read: mode 000 for a user; for root (who reads any mode), a
    regular file the kernel refuses to read (/proc/self/mem at offset 0: an I/O error)."""
    folder = make_split_safe_folder(tmp_path, "images", class_names=("cat", "dog"), images_per_class=20)
    locked = os.path.join(folder, "cat", "cat_003.jpg")
    if os.geteuid() != 0:
        os.chmod(locked, 0)
        reason = "Permission denied"
    else:
        os.remove(locked)
        os.symlink("/proc/self/mem", locked)
        reason = "Input/output error"
    result = retrain.run(quick_config(tmp_path / "out", folder, tiny_module))
    assert (locked, f"cannot read {locked}: {reason}") in result.failed_images
    assert result.test_accuracy is not None


def test_a_damaged_saved_model_is_one_clear_error(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff garbage")
    with pytest.raises(UserError, match="is not a SavedModel"):
        scan.check_saved_model(str(tmp_path / "model"))

