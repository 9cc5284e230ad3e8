"""The labels file retrain.py wrote: one label per line in class order, newline-terminated."""

from retrain.data import storage


def write_labels(path: str, labels: list[str]) -> None:
    """Writes the labels file atomically."""
    storage.write_text(path, "\n".join(labels) + "\n")


def write(path: str, model, options=None) -> None:
    """The labels file of a TrainedModel."""
    del options  # Nothing to choose.
    write_labels(path, model.labels)
