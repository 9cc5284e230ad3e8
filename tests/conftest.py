"""Shared fixtures: one tiny module and one synthetic image folder per test session."""

import os
import subprocess
import sys

import pytest

from retrain import testing

# Tests run the tools in subprocesses with TensorFlow's start-up chatter off.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiny_module(tmp_path_factory):
    """A local TF-Hub-format feature-vector module: [None, 24, 24, 3] -> [None, 32]."""
    return testing.build_tiny_module(str(tmp_path_factory.mktemp("modules") / "tiny"))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Three learnable colour classes, 30 images each, with folder names to normalise."""
    return make_split_safe_folder(
        tmp_path_factory.mktemp("data"), "images", class_names=("Red-Things", "green", "blue_ones"),
        images_per_class=30, seed=1,
    )


def make_split_safe_folder(parent, name, class_names, images_per_class, **options):
    """testing.make_image_folder at parent/name, moved to parent/name-1, name-2... until every
    class has validation and testing images at 10%/10%; returns where it ended.

    The split hashes each image's full path, as retrain.py's did, so which images are held
    out depends on where pytest puts its temporary folders (pytest-0 here, pytest-90 on
    CI). Tests that need held-out images must not depend on that.
    """
    root = testing.make_image_folder(os.path.join(str(parent), name), class_names=class_names,
                                     images_per_class=images_per_class, **options)
    for attempt in range(1, 100):
        if holds_out_every_class(root, root):
            return root
        moved = os.path.join(str(parent), f"{name}-{attempt}")
        os.rename(root, moved)
        root = moved
    raise AssertionError(f"no folder under {parent} holds out images of every class")


def holds_out_every_class(folder, at):
    """Whether folder's images, were they at the folder path at, would leave validation and
    testing images in every class at 10%/10% (see make_split_safe_folder)."""
    from retrain.data import image_lists, storage

    classes = [c for c in os.listdir(folder) if os.path.isdir(os.path.join(folder, c))]
    sets = {(c, image_lists.which_set(storage.join(str(at), c, f), 10, 10))
            for c in classes for f in os.listdir(os.path.join(folder, c))}
    return all((c, s) in sets for c in classes for s in ("validation", "testing"))


def cache_files(root):
    """Paths of the bottleneck files under a cache root (not the .retrain records beside them)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".retrain"]
        found.extend(os.path.join(folder, n) for n in names)
    return found


def call_command(name, *args):
    """Runs a console script's command in this process, as its entry point would (flags parser,
    then main): (exit status, stdout, stderr). Its log lines are in stderr as 'E message'."""
    import contextlib
    import io
    import logging as python_logging

    from retrain.commands import cache_main, cli, compare_main, doctor_main, label_image_main, retrain_main

    command = {"retrain": retrain_main, "label-image": label_image_main, "retrain-cache": cache_main,
               "retrain-compare": compare_main, "retrain-doctor": doctor_main}[name]
    out, err = io.StringIO(), io.StringIO()
    handler = python_logging.StreamHandler(err)
    handler.setFormatter(python_logging.Formatter("%(levelname).1s %(message)s"))
    absl_logger = python_logging.getLogger("absl")
    absl_logger.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.call_in_process(command.parse_flags, command.main, [name, *map(str, args)])
    finally:
        absl_logger.removeHandler(handler)
    return status, out.getvalue(), err.getvalue()


def run_tool(name, *args, cwd=None, timeout=300):
    """Runs an installed console script; returns the CompletedProcess (text)."""
    executable = os.path.join(os.path.dirname(sys.executable), name)
    return subprocess.run(
        [executable, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL
    )


# Starts a program with SIGINT at its default action, then becomes it. A shell that runs
# the tests in the background without job control (`cmd &` in a script, nohup) has
# SIGINT ignored, every child inherits that, and Python then installs no
# KeyboardInterrupt: Ctrl-C tests would wait forever.
_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def start_tool(name, *args):
    """Starts an installed console script that Ctrl-C (SIGINT) interrupts, stderr piped (text)."""
    executable = os.path.join(os.path.dirname(sys.executable), name)
    return subprocess.Popen(
        [sys.executable, "-c", _WITH_DEFAULT_SIGINT, executable, *args],
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, image_folder, tiny_module):
    """A graph, labels file, SavedModel and TFLite model trained in-process on image_folder."""
    import retrain

    out = tmp_path_factory.mktemp("trained")
    config = quick_config(
        out, image_folder, tiny_module, saved_model_dir=str(out / "saved_model"), output_tflite=str(out / "model.tflite")
    )
    retrain.run(config)
    return {"graph": str(out / "graph.pb"), "labels": str(out / "labels.txt"), "saved_model": str(out / "saved_model"),
            "tflite": str(out / "model.tflite")}


def quick_config(out, image_dir, module, *, steps=150, learning_rate=0.1, seed=3, testing_percentage=25,
                 validation_percentage=10, bottleneck_dir=None, train=None, **fields):
    """A quick run's RetrainConfig, writing graph.pb, labels.txt and ckpt/c under the folder out, no summaries.

    Args:
      steps, learning_rate, seed, train (more TrainConfig fields): the training.
      testing_percentage, validation_percentage: the split (a quarter held out for testing).
      bottleneck_dir: the cache (default out/bottlenecks).
      fields: RetrainConfig fields, and OutputConfig fields (output_tflite=..., summaries_dir=...).
    """
    import dataclasses

    import retrain

    output_names = {field.name for field in dataclasses.fields(retrain.OutputConfig)}
    output = {name: fields.pop(name) for name in list(fields) if name in output_names}
    return retrain.RetrainConfig(
        image_dir=str(image_dir),
        tfhub_module=str(module),
        bottleneck_dir=str(bottleneck_dir or (out / "bottlenecks")),
        split=retrain.SplitConfig(testing_percentage=testing_percentage, validation_percentage=validation_percentage),
        train=retrain.TrainConfig(how_many_training_steps=steps, learning_rate=learning_rate, random_seed=seed,
                                  **(train or {})),
        output=retrain.OutputConfig(**{
            "output_graph": str(out / "graph.pb"), "output_labels": str(out / "labels.txt"), "summaries_dir": "",
            "checkpoint_path": str(out / "ckpt" / "c"), **output,
        }),
        **fields,
    )


def run_frozen_graph(graph, feeds, fetches="final_result:0", session_config=None):
    """session.run(fetches, feeds) on a frozen GraphDef (or the path of one) in a plain TF1 session,
    imported without a prefix, as retrain.py's users ran it. feeds: {tensor name: value}."""
    import tensorflow as tf

    graph_def = graph
    if not isinstance(graph, tf.compat.v1.GraphDef):
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(open(graph, "rb").read())
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=tf_graph, config=session_config) as session:
            return session.run(fetches, feeds)


def frozen_graph_scores(graph_path, paths, size=24):
    """What a plain TF1 session computes with a frozen graph on these image files, as
    retrain.py's users ran it: (scores [n, classes], the module inputs fed [n, size, size, 3])."""
    import numpy as np

    from retrain.data import images

    batch = np.stack([images.to_module_input(images.read_image(p), size, size) for p in paths])
    return run_frozen_graph(graph_path, {"Placeholder:0": batch}), batch


def chromium():
    """The headless browser the page tests use (Debian's chromium in CI), or None."""
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def browser_dom(url, profile, timeout=180):
    """The DOM of url after headless Chromium ran its scripts (virtual time), and the browser's
    console lines: (html text, [console lines])."""
    browser = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--log-level=0",
         "--virtual-time-budget=60000", "--dump-dom", str(url)],
        capture_output=True, text=True, timeout=timeout,
    )
    return browser.stdout, [line for line in browser.stderr.splitlines() if ":CONSOLE" in line]


def hide_modules(monkeypatch, *names):
    """Makes importing the named top-level packages (and their submodules) fail for the rest of
    the test, as on a machine without the extra that installs them."""
    import builtins

    real_import = builtins.__import__

    def without(name, *args, **kwargs):
        if name.split(".")[0] in names:
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    # importlib.import_module does not pass through builtins.__import__; a None entry in
    # sys.modules makes it fail the same way.
    for loaded in [m for m in sys.modules if m.split(".")[0] in names] + list(names):
        monkeypatch.setitem(sys.modules, loaded, None)
