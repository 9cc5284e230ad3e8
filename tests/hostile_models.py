"""Model files that look like classifiers but do something else when run or loaded.

Each writes (or lists) a file when TensorFlow runs it: what label-image and retrain
must refuse before loading. Built here, into the test's own folder.
"""

import os

import numpy as np
import tensorflow as tf

SIZE = 24


def _scores(images):
    """Three plausible class scores from float32 [batch, SIZE, SIZE, 3] images."""
    return tf.nn.softmax(tf.reduce_mean(images, axis=[1, 2]) * 10.0)


def frozen_graph_writing_a_file(path: str, target: str) -> str:
    """Placeholder -> final_result, with WriteFile(target) as a control dependency of final_result."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="Placeholder")
        write = tf.io.write_file(target, "written by a model", name="innocent_looking")
        with tf.control_dependencies([write]):
            tf.identity(_scores(images), name="final_result")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())
    return path


class _Classifier(tf.Module):
    def __init__(self, call):
        super().__init__()
        self._call = call
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])

    def _serve(self, image):
        return {"prediction": self._call(image)}

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        return self._call(images)


def _save(module, path: str) -> str:
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def saved_model_writing_in_a_cond_branch(path: str, target: str) -> str:
    """serving_default writes target inside a tf.cond branch (a function of the library)."""

    def call(images):
        def write():
            with tf.control_dependencies([tf.io.write_file(target, "written in a branch")]):
                return tf.identity(images)

        passed = tf.cond(tf.reduce_mean(images) >= 0.0, write, lambda: tf.identity(images))
        return _scores(passed)

    return _save(_Classifier(call), path)


def saved_model_listing_a_folder(path: str, target: str, folder: str) -> str:
    """serving_default lists folder (MatchingFiles) and prints it to a file:// stream."""

    def call(images):
        listing = tf.io.matching_files(os.path.join(folder, "*"))
        with tf.control_dependencies([tf.print(listing, output_stream=f"file://{target}")]):
            return _scores(tf.identity(images))

    return _save(_Classifier(call), path)


class _WritingResource(tf.saved_model.experimental.TrackableResource):
    """A resource whose initializer, which tf.saved_model.load runs while loading, writes a file."""

    def __init__(self, target: str):
        super().__init__()
        self._target = target

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

    def _initialize(self):
        tf.io.write_file(self._target, "written while loading")
        tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=np.float32(1.0))


def saved_model_writing_while_loading(path: str, target: str) -> str:
    """A feature-vector module (and classifier) whose resource initializer writes target at load."""
    module = _Classifier(lambda images: tf.reduce_mean(images, axis=[1, 2]) * 1.0)
    module.resource = _WritingResource(target)
    return _save(module, path)
