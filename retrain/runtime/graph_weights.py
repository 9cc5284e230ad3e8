"""A frozen GraphDef run with its weights held once, in resource variables.

A TF1 session keeps several copies of every constant of the graph it runs: the
Python graph's node attributes, the session's own graph, the executor's partition,
and the tensor each Const kernel parses from them. For Inception v3 that is about
90 MB each time, the difference between label-image's one image fitting in 1 GB of
RSS or not. Here each large constant becomes a ``ReadVariableOp`` of the same name,
reading a variable assigned once from the constant's value: the graph keeps its
node names, shapes and arithmetic (the same kernels see the same tensors, so scores
are bit-identical), and the weights exist once.
"""

import numpy as np
import tensorflow as tf

# Constants at least this large move into variables; smaller ones (shapes, axes,
# calibration constants that callers read back) stay constants.
MIN_BYTES = 64 * 1024

_HANDLE_SUFFIX = "/_weights_handle"
_VALUE_SUFFIX = "/_weights_value"

# Weights: floating types, which numpy holds and variables take on every device. Others
# (integer tables, strings, quantized types of older tools) stay constants.
_MOVABLE_DTYPES = frozenset(dtype.as_datatype_enum for dtype in (tf.float16, tf.float32, tf.float64))


def _is_large_constant(node) -> bool:
    if node.op != "Const" or "value" not in node.attr:
        return False
    tensor = node.attr["value"].tensor
    return tensor.dtype in _MOVABLE_DTYPES and len(tensor.tensor_content) >= MIN_BYTES


def split_weights(graph_def: tf.compat.v1.GraphDef) -> tuple[tf.compat.v1.GraphDef, dict[str, np.ndarray]]:
    """The graph with its large constants turned into variable reads, and their values.

    Returns:
      (a new GraphDef with a VarHandleOp + ReadVariableOp in place of each large Const,
       {constant name: its value as a numpy array}); graph_def is left as it was.

    Raises:
      ValueError: a large constant's value is damaged.
    """
    light = tf.compat.v1.GraphDef()
    light.versions.CopyFrom(graph_def.versions)
    light.library.CopyFrom(graph_def.library)
    weights = {}
    for node in graph_def.node:
        if not _is_large_constant(node):
            light.node.add().CopyFrom(node)
            continue
        try:
            value = tf.make_ndarray(node.attr["value"].tensor)
        except (ValueError, TypeError) as e:  # Its bytes do not fill its shape.
            raise ValueError(f"constant {node.name} is damaged ({e})") from e
        weights[node.name] = value
        dtype = node.attr["dtype"]
        handle = light.node.add(name=node.name + _HANDLE_SUFFIX, op="VarHandleOp", device=node.device)
        handle.attr["dtype"].CopyFrom(dtype)
        handle.attr["shape"].shape.CopyFrom(tf.TensorShape(value.shape).as_proto())
        handle.attr["shared_name"].s = handle.name.encode()
        handle.attr["container"].s = b""
        control_inputs = [name for name in node.input if name.startswith("^")]
        read = light.node.add(name=node.name, op="ReadVariableOp", device=node.device,
                              input=[handle.name] + control_inputs)
        read.attr["dtype"].CopyFrom(dtype)
    return light, weights


def assign_weights(session: tf.compat.v1.Session, weights: dict[str, np.ndarray]) -> None:
    """Gives each variable made by split_weights its value, in session's graph."""
    if not weights:
        return
    graph = session.graph
    feeds = {}
    assignments = []
    with graph.as_default():
        for name, value in weights.items():
            placeholder = tf.compat.v1.placeholder(value.dtype, value.shape, name=name + _VALUE_SUFFIX)
            handle = graph.get_tensor_by_name(name + _HANDLE_SUFFIX + ":0")
            assignments.append(tf.raw_ops.AssignVariableOp(resource=handle, value=placeholder))
            feeds[placeholder] = value
    session.run(assignments, feeds)
