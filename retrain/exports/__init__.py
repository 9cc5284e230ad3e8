"""Everything a run writes, declared once: OUTPUTS.

Each entry owns its flags: the OutputConfig field holding its location and its
options (help, choices, and a check of their values), and names the module that
writes it (imported only when it is written, so the table costs no TensorFlow). The
same table drives the flags of ``retrain`` (commands turn each Flag into an absl flag
and back into OutputConfig), the check before the long work that every location can
be written, and the writing itself. A new format is one module with a
``write(path, model, options)`` function and one entry here.

Every artifact is written atomically (temporary name, then rename; see data.storage),
with the permissions the user's umask gives.
"""

import dataclasses
import importlib
from typing import Callable

from absl import logging

from retrain import config
from retrain.config import OutputConfig
from retrain.data import storage
from retrain.errors import UserError


@dataclasses.dataclass(frozen=True)
class Flag:
    """A command-line flag that sets the OutputConfig field of the same name.

    Its type and default are the field's (config.OutputConfig); choices make it an enum.
    """

    name: str
    help: str
    choices: tuple[str, ...] = ()


def _no_problem(options: OutputConfig) -> str | None:
    del options
    return None


@dataclasses.dataclass(frozen=True)
class Output:
    """One artifact.

    Attributes:
      field: the OutputConfig field, and command-line flag, holding its location
        ('' there: not written).
      description: what it is, for messages.
      writer: the module whose write(path, TrainedModel, OutputConfig) writes it and
        returns a report or None; '' for what is written during training (its
        location is still checked up front).
      flags: the flags it owns, its location's first.
      is_folder: a folder (a SavedModel, replaced whole) rather than a file.
      writes_inside: files go inside the location, which must itself be writable.
      announcement: logged with the path before writing ('' for nothing).
      check: OutputConfig -> a message naming a flag whose value cannot work, or None.
      enabled: OutputConfig -> whether it is written (None: whenever its location is set).
      requires: a module whose check_available() raises UserError, naming the pip install,
        when an optional extra it needs is missing ('' for none).
    """

    field: str
    description: str
    writer: str
    flags: tuple[Flag, ...]
    is_folder: bool = False
    writes_inside: bool = False
    announcement: str = ""
    check: Callable[[OutputConfig], str | None] = _no_problem
    enabled: Callable[[OutputConfig], bool] | None = None
    requires: str = ""

    def location(self, options: OutputConfig) -> str:
        return getattr(options, self.field)

    def is_enabled(self, options: OutputConfig) -> bool:
        return self.enabled(options) if self.enabled else bool(self.location(options))

    def write(self, path: str, model, options: OutputConfig):
        return importlib.import_module(self.writer).write(path, model, options)


def _check_final_tensor_name(options: OutputConfig) -> str | None:
    return None if options.final_tensor_name else "--final_tensor_name must not be empty"


def _check_tflite(options: OutputConfig) -> str | None:
    if options.tflite_io_type != "float32" and options.tflite_quantization != "int8":
        return "--tflite_io_type uint8 or int8 needs --tflite_quantization int8"
    if options.tflite_representative_images <= 0:
        return f"--tflite_representative_images must be positive, not {options.tflite_representative_images}"
    return None


def _check_intermediate(options: OutputConfig) -> str | None:
    if options.intermediate_store_frequency < 0:
        return f"--intermediate_store_frequency must be 0 or positive, not {options.intermediate_store_frequency}"
    return None


# In the order they are written.
OUTPUTS = (
    Output("checkpoint_path", "checkpoint", "retrain.exports.checkpoint", (
        Flag("checkpoint_path", "Where to save the checkpoint of the trained layer."),
    )),
    Output("output_graph", "frozen graph", "retrain.exports.frozen_graph", (
        Flag("output_graph", "Where to save the trained graph."),
        Flag("final_tensor_name", "The name of the output classification layer in the retrained graph."),
    ), announcement="Save final result to : %s", check=_check_final_tensor_name),
    Output("output_labels", "labels file", "retrain.exports.labels", (
        Flag("output_labels", "Where to save the trained graph's labels."),
    )),
    Output("saved_model_dir", "SavedModel", "retrain.exports.saved_model", (
        Flag("saved_model_dir",
             "Where to also save the model as a SavedModel, for TF Serving and Python. Signature "
             "serving_default: input 'image' (as the frozen graph's), output 'prediction'; signature "
             "serving_bytes: input 'images', encoded JPEG/PNG/GIF/BMP files, outputs 'scores', "
             "'top_labels', 'top_scores'. Not saved if empty; an existing folder is replaced."),
    ), is_folder=True, announcement="Saving the SavedModel to %s"),
    Output("output_tflite", "TFLite model", "retrain.exports.tflite", (
        Flag("output_tflite",
             "Where to also save the model as TFLite (.tflite, for Android, iOS and the edge): input "
             "'image' float32 [batch, height, width, 3] RGB in [0, 1] as for the frozen graph, output "
             "'scores'. It is then run on the test images and its agreement with the frozen graph logged. "
             "Not saved if empty."),
        Flag("tflite_quantization",
             "How --output_tflite stores the model: float (as trained), float16 (half the size), or int8 "
             "(full-integer quantization calibrated on training images: a quarter of the size, fast on phones).",
             choices=config.TFLITE_QUANTIZATIONS),
        Flag("tflite_io_type",
             "With --tflite_quantization int8: the type of the model's input and output. float32 (default) "
             "needs no scale or zero point from callers; uint8 / int8 take quantized pixels.",
             choices=config.TFLITE_IO_TYPES),
        Flag("tflite_representative_images",
             "With --tflite_quantization int8: how many training images (chosen with the random seed) "
             "calibrate the quantization ranges. More can help when int8 agrees poorly with the frozen graph."),
    ), announcement="Converting to TFLite for %s", check=_check_tflite),
    Output("output_onnx", "ONNX model", "retrain.exports.onnx", (
        Flag("output_onnx",
             "Where to also save the model as ONNX (.onnx, for ONNX Runtime): input 'image' float32 [batch, "
             "height, width, 3] RGB in [0, 1] as for the frozen graph, output 'scores' (probabilities); labels "
             "and calibration in its metadata. It is then checked against the frozen graph on the test images. "
             "Needs pip install \"retrain[onnx]\". Not saved if empty."),
    ), announcement="Converting to ONNX for %s", requires="retrain.exports.onnx"),
    Output("output_web", "web page", "retrain.exports.web", (
        Flag("output_web",
             "Where to also write a static web page that classifies a photo in the browser, offline (index.html, "
             "the model as ONNX with the resize inside, onnxruntime-web); serve the folder to use it. "
             "index.html?image=NAME classifies NAME on load. Needs pip install \"retrain[onnx]\". An existing "
             "folder is replaced."),
        Flag("web_runtime",
             "With --output_web: onnxruntime-web's .tgz (npm pack onnxruntime-web@1.31.1) or unpacked package, "
             "for machines without network; empty: downloaded from the npm registry once and kept in "
             "~/.cache/retrain."),
    ), is_folder=True, announcement="Writing the web page to %s", requires="retrain.exports.onnx"),
    Output("intermediate_output_graphs_dir", "intermediate graphs", "", (
        Flag("intermediate_output_graphs_dir",
             "Where to save the intermediate graphs (the file name is appended as is: keep the trailing '/')."),
        Flag("intermediate_store_frequency",
             "How many steps to store intermediate graph. If \"0\" then will not store."),
    ), is_folder=True, writes_inside=True, check=_check_intermediate,
        enabled=lambda options: options.intermediate_store_frequency > 0),
    Output("summaries_dir", "TensorBoard summaries", "", (
        Flag("summaries_dir",
             "Where to save summary logs for TensorBoard. Its train/ and validation/ sub-folders are "
             "replaced; nothing else in it is touched."),
    ), is_folder=True, writes_inside=True),
)


def all_flags() -> tuple[Flag, ...]:
    """Every flag the outputs own, in table order."""
    return tuple(flag for output in OUTPUTS for flag in output.flags)


def check_options(options: OutputConfig) -> list[str]:
    """Messages, each naming a flag, for output options that cannot work ([] when all can)."""
    return [message for output in OUTPUTS if (message := output.check(options))]


def check_requirements(options: OutputConfig) -> None:
    """Raises UserError, naming the pip install, when an output asked for needs a missing extra."""
    for output in OUTPUTS:
        if output.requires and output.is_enabled(options):
            importlib.import_module(output.requires).check_available()


def check_folder(folder: str, description: str) -> None:
    """Raises UserError unless a file can be created in folder (made if missing)."""
    try:
        storage.check_writable(folder or ".")
    except OSError as e:
        raise UserError(f"Cannot write the {description} to {folder or '.'}: {e.strerror or e}") from e


def check_locations(options: OutputConfig) -> None:
    """Raises UserError unless every configured output can be written.

    Called before the long work, so that a typo in a path costs seconds, not hours.
    """
    for output in OUTPUTS:
        if not output.is_enabled(options):
            continue
        path = output.location(options)
        if output.writes_inside:
            check_folder(path, output.description)
            continue
        if not output.is_folder and storage.isdir(path):
            raise UserError(f"{path} is a directory; give a file name for --{output.field}.")
        check_folder(storage.dirname(path.rstrip("/")), output.description)


def write_outputs(options: OutputConfig, model) -> dict[str, object]:
    """Writes every configured output of a TrainedModel; returns {field: report} for those that report.

    Raises:
      UserError: an output could not be written (the earlier file stays).
    """
    reports = {}
    for output in OUTPUTS:
        if not output.writer or not output.is_enabled(options):
            continue
        path = output.location(options)
        if output.announcement:
            logging.info(output.announcement, path)
        try:
            report = output.write(path, model, options)
        except OSError as e:
            raise UserError(f"Cannot write the {output.description} to {path}: {e.strerror or e}") from e
        if report is not None:
            reports[output.field] = report
    return reports


def write_intermediate(options: OutputConfig, model, step: int) -> None:
    """The graph of a TrainedModel after step, as --intermediate_store_frequency asks (and its checkpoint)."""
    from retrain.exports import intermediate

    try:
        intermediate.write(options, model, step)
    except OSError as e:
        raise UserError(f"Cannot write the intermediate graph of step {step}: {e.strerror or e}") from e


__all__ = [
    "OUTPUTS", "Flag", "Output", "all_flags", "check_folder", "check_locations", "check_options", "check_requirements",
    "write_intermediate", "write_outputs",
]
