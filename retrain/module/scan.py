"""Models are programs: every operation of a model file is read before anything loads or runs it.

TensorFlow's own security guide: a model "may read and write files, send and receive
data over the network, and even spawn additional processes", and "one common solution
is to allow only a few safe Ops". So every model a command loads (a module given to
retrain, a graph, SavedModel or TFLite file given to label-image, the frozen modules kept
in the cache) is first read here as data, and refused when it holds an operation
outside module.safe_ops, an allowlist of operations that compute on tensors. Read are
every node of every graph (every meta graph of a SavedModel) and every function of the
library, reachable or not: If/While/Case branches and resource initializers are
functions too, and tf.saved_model.load runs initializers while loading.

One exemption, made precisely: a SavedModel's (and a TF1 Hub module's) own saver. The
file operations of checkpointing (SaveV2, RestoreV2, MergeV2Checkpoints, ...) are
allowed only in the nodes and functions that the meta graph's saver_def names for
saving and restoring (and nothing else reaches), save operations only on the saving
side, restore operations only on the restoring side, and only on a path that comes
from the saver's filename.

A refusal is one UserError naming the operations and where they are;
--allow_unsafe_ops skips the check for files one trusts (it is no sandbox).
"""

import dataclasses
import os

from retrain.data import storage
from retrain.errors import UserError
from retrain.module.safe_ops import SAFE_OPS

# The file operations of a saver, allowed only inside the saver's own save or restore side.
SAVE_OPS = frozenset({"SaveV2", "Save", "SaveSlices", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec"})
RESTORE_OPS = frozenset({"RestoreV2", "Restore", "RestoreSlice", "ShardedFilename", "ShardedFilespec"})
# Their input that names the files (the first); it must come from the saver's filename.
_PATH_INPUT = 0

ALLOW_HINT = (
    "If you trust whoever made it, pass --allow_unsafe_ops: TensorFlow runs a model's operations with your "
    "permissions, and that flag is no sandbox."
)
_LISTED = 8


@dataclasses.dataclass(frozen=True)
class Finding:
    """An operation outside the allowlist, and where it is (a node, or a function of the library)."""

    op: str
    where: str

    def __str__(self) -> str:
        return f"{self.op} ({self.where})"


class UnsafeModelError(UserError):
    """A model file holds operations that reach outside the model; nothing of it was loaded or run."""


def check_graph_def(graph_def, name: str, *, allow_unsafe_ops: bool = False) -> None:
    """Raises UnsafeModelError unless every node and library function of a GraphDef is allowed."""
    if not allow_unsafe_ops:
        _refuse_if_any(graph_findings(graph_def), name)


def check_saved_model(folder: str, name: str = "", *, allow_unsafe_ops: bool = False) -> None:
    """Raises UnsafeModelError unless every meta graph of the SavedModel (or TF1 Hub module)
    in folder is allowed. A folder that is no SavedModel is left for the loader to refuse."""
    if allow_unsafe_ops:
        return
    saved_model = read_saved_model(folder)
    if saved_model is None:
        return
    findings = []
    for meta_graph in saved_model.meta_graphs:
        findings += meta_graph_findings(meta_graph)
    _refuse_if_any(findings, name or folder)


def check_tflite(content: bytes, name: str, *, allow_unsafe_ops: bool = False) -> None:
    """Raises UnsafeModelError for a .tflite model with custom operations other than TensorFlow
    operations of the allowlist (TFLite's builtins compute on tensors; "Flex" operations run
    TensorFlow's)."""
    if allow_unsafe_ops:
        return
    findings = []
    for code in tflite_custom_codes(content):
        if not (code.startswith("Flex") and code[len("Flex"):] in SAFE_OPS):
            findings.append(Finding(code, "a custom operation"))
    _refuse_if_any(findings, name)


# ONNX operator domains a classifier needs; others are custom operators, run from libraries.
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


def check_onnx(content: bytes, name: str, *, allow_unsafe_ops: bool = False) -> None:
    """Raises UnsafeModelError for an ONNX model with operators outside the standard domains
    (custom operators run native code from libraries) or tensors read from files outside
    its own folder (external data is named by a path, which ONNX Runtime opens)."""
    if allow_unsafe_ops:
        return
    import onnx

    try:
        model = onnx.load_model_from_string(content)
    except Exception as e:  # protobuf's DecodeError and friends.
        raise UserError(f"{name} is not an ONNX model: {e}") from e
    local = {(function.domain, function.name) for function in model.functions}
    findings = []

    def visit(graph, where):
        for tensor in graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location" and (os.path.isabs(entry.value) or ".." in entry.value.split("/")):
                    findings.append(Finding(f"external data at {entry.value}", f'{where} tensor "{tensor.name}"'))
        for node in graph.node:
            if node.domain not in ONNX_DOMAINS and (node.domain, node.op_type) not in local:
                findings.append(Finding(f"{node.domain}.{node.op_type}", f'{where} node "{node.name}"'))
            for attribute in node.attribute:
                for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    visit(subgraph, f"{where} subgraph")

    visit(model.graph, "graph")
    for function in model.functions:
        for node in function.node:
            if node.domain not in ONNX_DOMAINS and (node.domain, node.op_type) not in local:
                findings.append(Finding(f"{node.domain}.{node.op_type}", f'function "{function.name}"'))
    _refuse_if_any(findings, name)


def read_saved_model(folder: str):
    """The SavedModel proto of folder (saved_model.pb, else .pbtxt), or None when there is none.

    Raises:
      UserError: the file is there but damaged.
    """
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    for file_name, parse in (("saved_model.pb", saved_model.ParseFromString),
                             ("saved_model.pbtxt", lambda data: text_format.Parse(data.decode("utf-8"), saved_model))):
        path = storage.join(folder, file_name)
        try:
            data = storage.read_bytes(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            raise UserError(f"Cannot read {path}: {e.strerror or e}") from e
        try:
            parse(data)
        except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as e:
            raise UserError(f"{path} is not a SavedModel: {e}") from e
        return saved_model
    return None


def graph_findings(graph_def) -> list[Finding]:
    """The operations of a GraphDef outside the allowlist (no saver: a frozen graph has none)."""
    return _findings(graph_def, _Saver.none(), model_functions=())


def meta_graph_findings(meta_graph) -> list[Finding]:
    """The operations of one meta graph outside the allowlist, its saver exempted precisely."""
    graph_def = meta_graph.graph_def
    saver = _Saver.of(meta_graph.saver_def, graph_def) if meta_graph.HasField("saver_def") else _Saver.none()
    concrete = list(meta_graph.object_graph_def.concrete_functions) if meta_graph.HasField("object_graph_def") else []
    return _findings(graph_def, saver, model_functions=concrete)


def tflite_custom_codes(content: bytes) -> list[str]:
    """The custom operation codes a .tflite model declares (its builtins need no check)."""
    from retrain.runtime import tflite_runtime

    schema = tflite_runtime.schema()
    try:
        model = schema.Model.GetRootAs(bytearray(content), 0)
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    except Exception as e:  # A broken flatbuffer: the interpreter will refuse it with its reason.
        del e
        return []
    return [code.CustomCode().decode("utf-8", "replace") for code in codes if code.CustomCode()]


@dataclasses.dataclass(frozen=True)
class _Saver:
    """A meta graph's saver: its filename node, and the nodes on its save and restore sides."""

    filename: str
    save_nodes: frozenset
    restore_nodes: frozenset

    @classmethod
    def none(cls) -> "_Saver":
        return cls("", frozenset(), frozenset())

    @classmethod
    def of(cls, saver_def, graph_def) -> "_Saver":
        inputs = {node.name: [_node_name(i) for i in node.input] for node in graph_def.node}
        return cls(
            _node_name(saver_def.filename_tensor_name),
            frozenset(_ancestors(inputs, [_node_name(saver_def.save_tensor_name)])),
            frozenset(_ancestors(inputs, [_node_name(saver_def.restore_op_name)])),
        )

    def extra_ops(self, on_save: bool, on_restore: bool) -> frozenset:
        """The saver operations allowed on that side (both sides: those both allow)."""
        if on_save and on_restore:
            return SAVE_OPS & RESTORE_OPS
        return SAVE_OPS if on_save else (RESTORE_OPS if on_restore else frozenset())


def _findings(graph_def, saver: _Saver, model_functions) -> list[Finding]:
    library = {function.signature.name: function for function in graph_def.library.function}
    inputs = {node.name: [_node_name(i) for i in node.input] for node in graph_def.node}
    saver_side = saver.save_nodes | saver.restore_nodes
    model_reach = _function_closure(
        [f for node in graph_def.node if node.name not in saver_side for f in _called(node)] + list(model_functions),
        library)
    save_reach = _function_closure([f for node in graph_def.node if node.name in saver.save_nodes for f in _called(node)],
                                   library) - model_reach
    restore_reach = _function_closure(
        [f for node in graph_def.node if node.name in saver.restore_nodes for f in _called(node)], library) - model_reach
    found = []
    for node in graph_def.node:
        extra = saver.extra_ops(node.name in saver.save_nodes, node.name in saver.restore_nodes)
        if _allowed(node.op, library) or (node.op in extra and saver.filename in _ancestors(
                inputs, [_node_name(node.input[_PATH_INPUT])] if node.input else [])):
            continue
        found.append(Finding(node.op, f'node "{node.name}"'))
    for name, function in library.items():
        extra = saver.extra_ops(name in save_reach, name in restore_reach)
        arguments = {argument.name for argument in function.signature.input_arg}
        body = {node.name: [_node_name(i) for i in node.input] for node in function.node_def}
        for node in function.node_def:
            if _allowed(node.op, library):
                continue
            if node.op in extra and node.input and arguments & _ancestors(body, [_node_name(node.input[_PATH_INPUT])]):
                continue  # The saver's own, on the path its caller gave.
            found.append(Finding(node.op, f'function "{name}"'))
    return found


def _allowed(op: str, library: dict) -> bool:
    return op in SAFE_OPS or op in library  # A node may call a library function by its name.


def _node_name(reference: str) -> str:
    """'^name', 'name:1' or 'name:output:0' (inside functions) -> 'name'."""
    return reference.lstrip("^").split(":")[0]


def _ancestors(inputs: dict, roots) -> set:
    """The names of roots and of every node they depend on (data and control inputs)."""
    seen, stack = set(), [root for root in roots if root]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(inputs.get(name, ()))
    return seen


def _called(node) -> list[str]:
    """The names of the functions a node (or node_def) calls through its attributes."""
    names = []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        elif value.HasField("list"):
            names.extend(function.name for function in value.list.func)
    return names


def _function_closure(roots, library: dict) -> set:
    """roots and every library function they call, transitively."""
    seen, stack = set(), list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in library:
            continue
        seen.add(name)
        for node in library[name].node_def:
            stack.extend(_called(node))
            if node.op in library:
                stack.append(node.op)
    return seen


def _refuse_if_any(findings: list[Finding], name: str) -> None:
    if not findings:
        return
    unique = list(dict.fromkeys(str(finding) for finding in findings))
    listed = ", ".join(unique[:_LISTED]) + (f" and {len(unique) - _LISTED} more" if len(unique) > _LISTED else "")
    raise UnsafeModelError(
        f"Refusing to load {name}: it holds operations that can reach outside the model (files, network, "
        f"processes, ...), which an image classifier never needs: {listed}. Nothing of it was loaded or run. "
        + ALLOW_HINT
    )
