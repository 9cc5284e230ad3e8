"""The few lines retrain prints when it is done: where each output went, the test accuracy
with its interval, and the command to try the model on one image.

Printed on stdout at the default verbosity and at WARN (retrain.py's log lines stay on
stderr, where --logging_verbosity governs them), so a script that hides the log still
learns where its model is and how good it is.
"""

import shlex

from retrain import exports
from retrain.config import RetrainConfig


def lines(config: RetrainConfig, result) -> list[str]:
    """The summary of a RetrainResult (pipeline.run) for config."""
    written = [(output.description, output.location(config.output)) for output in exports.OUTPUTS
               if output.is_enabled(config.output) and output.field != "summaries_dir"]
    if config.output.summaries_dir:
        logdir = config.output.summaries_dir
        written.append(("TensorBoard summaries", f"{logdir}   (tensorboard --logdir {shlex.quote(logdir)})"))
    if result.report_path:
        written.append(("evaluation report", result.report_path))
    written.append(("bottleneck cache", f"{config.bottleneck_dir}   ({result.bottlenecks_computed} computed, "
                                        f"{result.bottlenecks_reused} reused)"))
    width = max(len(name) for name, _ in written)
    summary = ["retrain: done. Written:"] + [f"  {name:<{width}}  {where}" for name, where in written]
    if result.test_accuracy is None:
        summary.append("Test accuracy: no test images (raise --testing_percentage, or add images).")
    else:
        low, high = result.test_interval
        summary.append(f"Test accuracy: {result.test_accuracy * 100:.1f}% (95% interval {low * 100:.1f}-"
                       f"{high * 100:.1f}%, N={result.test_count} test images).")
    refinement = result.refinement
    if refinement is not None and hasattr(refinement, "kept_epoch"):
        summary.append(f"Fine-tuning: kept epoch {refinement.kept_epoch}." if refinement.kept_epoch else
                       "Fine-tuning did not beat the head on validation: the head alone is kept.")
    next_command = _next_command(config, result)
    if next_command:
        summary.append(f"Next: {next_command}")
    return summary


def _next_command(config: RetrainConfig, result) -> str:
    """label-image on one image, with the first model written that it can run."""
    model = result.model
    image = (model.held_out.image_paths[0] if model is not None and model.held_out is not None
             else (model.representative_paths[0] if model is not None and model.representative_paths else ""))
    if not image:
        return ""
    out = config.output
    if out.output_graph and out.output_labels:
        graph = ["--graph", out.output_graph, "--labels", out.output_labels]
    elif out.saved_model_dir:
        graph = ["--graph", out.saved_model_dir]
    elif out.output_tflite:
        graph = ["--graph", out.output_tflite]
    else:
        return ""
    return shlex.join(["label-image", *graph, "--image", image])
