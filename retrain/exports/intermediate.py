"""Intermediate graphs (--intermediate_store_frequency N): the frozen graph every N steps, as retrain.py wrote them.

``<intermediate_output_graphs_dir>intermediate_<step>.pb``, the folder and file name
concatenated as retrain.py did (keep the trailing '/'), after the checkpoint of that
step; each is the same frozen module plus the head of that step.
"""

from absl import logging

from retrain.exports import checkpoint, frozen_graph


def write(options, model, step: int) -> None:
    """Saves the checkpoint, then writes the graph of model (the head after step)."""
    if options.checkpoint_path:
        checkpoint.write(options.checkpoint_path, model)
    path = options.intermediate_output_graphs_dir + "intermediate_" + str(step) + ".pb"
    logging.info("Save intermediate result to : %s", path)
    frozen_graph.write(path, model)
