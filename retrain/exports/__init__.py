"""Everything a run writes after training, declared once.

OUTPUTS lists each artifact with the OutputConfig field (and flag) naming its location,
whether it is a folder, and its writer. The same table drives the check, before the
long work, that every location can be written, and the writing itself; a new format
is one module with a ``write(path, model, options)`` function and one entry here.

Every artifact is written atomically (temporary name, then rename; see storage), with
the permissions the user's umask gives.
"""

import dataclasses
from typing import Callable

from absl import logging

from retrain import storage
from retrain.config import OutputConfig
from retrain.errors import UserError
from retrain.exports import checkpoint, frozen_graph, labels, saved_model, tflite
from retrain.exports.model import HeldOutImages, TrainedModel


@dataclasses.dataclass(frozen=True)
class Output:
    """One artifact.

    Attributes:
      field: the OutputConfig field, and command-line flag, holding its location
        ('' there: not written).
      description: what it is, for messages.
      is_folder: a folder (SavedModel) rather than a file.
      write: (path, TrainedModel, OutputConfig) -> a report or None.
      announcement: logged with the path before writing ('' for nothing).
    """

    field: str
    description: str
    is_folder: bool
    write: Callable[[str, TrainedModel, OutputConfig], object]
    announcement: str = ""

    def location(self, options: OutputConfig) -> str:
        return getattr(options, self.field)


# In the order they are written.
OUTPUTS = (
    Output("checkpoint_path", "checkpoint", False, checkpoint.write),
    Output("output_graph", "frozen graph", False, frozen_graph.write, "Save final result to : %s"),
    Output("output_labels", "labels file", False, labels.write),
    Output("saved_model_dir", "SavedModel", True, saved_model.write, "Saving the SavedModel to %s"),
    Output("output_tflite", "TFLite model", False, tflite.write, "Converting to TFLite for %s"),
)


def check_folder(folder: str, description: str) -> None:
    try:
        storage.check_writable(folder or ".")
    except OSError as e:
        raise UserError(f"Cannot write the {description} to {folder or '.'}: {e.strerror or e}") from e


def check_locations(options: OutputConfig) -> None:
    """Raises UserError unless every configured output (and work folder) can be written.

    Called before the long work, so that a typo in a path costs seconds, not hours.
    """
    for output in OUTPUTS:
        path = output.location(options)
        if not path:
            continue
        if not output.is_folder and storage.isdir(path):
            raise UserError(f"{path} is a directory; give a file name for --{output.field}.")
        check_folder(storage.dirname(path.rstrip("/")), output.description)
    if options.summaries_dir:
        check_folder(options.summaries_dir, "TensorBoard summaries")
    if options.intermediate_store_frequency > 0:
        check_folder(options.intermediate_output_graphs_dir, "intermediate graphs")


def write_outputs(options: OutputConfig, model: TrainedModel) -> dict[str, object]:
    """Writes every configured output of model; returns {field: report} for those that report.

    Raises:
      UserError: an output could not be written (the earlier file stays).
    """
    reports = {}
    for output in OUTPUTS:
        path = output.location(options)
        if not path:
            continue
        if output.announcement:
            logging.info(output.announcement, path)
        try:
            report = output.write(path, model, options)
        except OSError as e:
            raise UserError(f"Cannot write the {output.description} to {path}: {e.strerror or e}") from e
        if report is not None:
            reports[output.field] = report
    return reports


__all__ = ["OUTPUTS", "HeldOutImages", "Output", "TrainedModel", "check_folder", "check_locations", "write_outputs"]
