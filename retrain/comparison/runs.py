"""Each module trained as `retrain` trains it, on one split and one seed, then measured and ranked.

Every module's run is a plain retrain run (pipeline.run) whose outputs go to its own
folder under the output directory, with the shared bottleneck cache: what a later
`retrain` with the chosen module would compute is already there. The ranking and the
recommendation use validation accuracy only; test accuracy is reported, never chosen on
(choosing on it would make it a second validation set, and optimistic).
"""

import dataclasses
import random
import re

from absl import logging

from retrain import pipeline
from retrain.comparison import measure
from retrain.config import CompareConfig, OutputConfig
from retrain.data import image_lists, storage
from retrain.errors import UserError
from retrain.runtime import quiet


@dataclasses.dataclass
class ModuleResult:
    """One module's run and measures (None where the run could not give it).

    Attributes:
      module: the handle, as given.
      folder: its outputs (output_graph.pb, output_labels.txt, checkpoint), under the output directory.
      error: why the module could not be compared ('' when it was).
      validation_accuracy, test_accuracy: in [0, 1], on every validation / test image.
      validation_count, test_count: how many images those are.
      expected_calibration_error: of the model's scores (calibrated when calibrated) on
        held_out_set images, in [0, 1].
      calibrated: whether the run fitted a temperature.
      feature_size: values per bottleneck; input_size: (height, width) of the module's images.
      graph_bytes: size of the exported frozen graph.
      speed: measure.GraphSpeed of that graph on this machine.
      extraction_images_per_second: the module computing bottlenecks in this run (decoding
        included), or None when the cache held them.
      bottlenecks_computed, bottlenecks_reused: this run's cache work.
    """

    module: str
    folder: str
    error: str = ""
    validation_accuracy: float | None = None
    validation_count: int = 0
    test_accuracy: float | None = None
    test_count: int = 0
    expected_calibration_error: float | None = None
    held_out_set: str = ""
    calibrated: bool = False
    feature_size: int | None = None
    input_size: tuple[int, int] | None = None
    graph_bytes: int | None = None
    speed: measure.GraphSpeed | None = None
    extraction_images_per_second: float | None = None
    bottlenecks_computed: int = 0
    bottlenecks_reused: int = 0

    @property
    def latency_ms(self) -> float | None:
        return self.speed.latency_ms if self.speed else None


@dataclasses.dataclass
class Comparison:
    """What retrain-compare found.

    Attributes:
      modules: one ModuleResult per module, in the order given.
      ranking: indices into modules, best first: validation accuracy, then the smaller
        exported graph; modules that failed are left out.
      recommended: index of the recommended module (ranking[0]), or None.
      pareto: indices of the modules no other beats on both validation accuracy and latency.
      seed: the random seed every module's run used.
      output_dir: where everything was written.
    """

    modules: list[ModuleResult]
    ranking: list[int]
    recommended: int | None
    pareto: list[int]
    seed: int
    output_dir: str
    image_dir: str
    split: dict

    @property
    def reason(self) -> str:
        """Why the recommended module is recommended, in one sentence."""
        if self.recommended is None:
            return "No module could be compared."
        best = self.modules[self.recommended]
        text = (f"{best.module}: the highest validation accuracy, {best.validation_accuracy * 100:.1f}% of "
                f"{best.validation_count} images")
        tied = [i for i in self.ranking[1:] if self.modules[i].validation_accuracy == best.validation_accuracy]
        if tied:
            text += f" (tied with {len(tied)} other{'s' if len(tied) > 1 else ''}; it has the smallest graph of them)"
        text += "."
        if best.validation_count < 100:
            text += (f" With {best.validation_count} validation images one image is {100 / best.validation_count:.2g} "
                     "points: differences of a few images are noise.")
        return text


def module_folder_name(index: int, handle: str) -> str:
    """A folder name for the index-th module (0-based) that a person can tell apart: '02-mobilenet_v3-feature_vector-5'."""
    parts = [part for part in re.split(r"[/\\]+", handle.split("://", 1)[-1]) if part]
    tail = "-".join(parts[-3:]) if parts else "module"
    return f"{index + 1:02d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", tail)[-60:].lstrip("._-")


def module_run_config(config: CompareConfig, index: int, seed: int):
    """The RetrainConfig of the index-th module: config.run with that module, the shared seed,
    and outputs in its own folder (TensorBoard logs under output_dir/logs, to compare them)."""
    handle = config.modules[index]
    name = module_folder_name(index, handle)
    folder = storage.join(config.output_dir, name)
    run = config.run
    output = dataclasses.replace(
        OutputConfig(),
        output_graph=storage.join(folder, "output_graph.pb"),
        output_labels=storage.join(folder, "output_labels.txt"),
        checkpoint_path=storage.join(folder, "checkpoint", "retrain"),
        summaries_dir=storage.join(config.output_dir, "logs", name),
        final_tensor_name=run.output.final_tensor_name,
    )
    return dataclasses.replace(run, tfhub_module=handle, output=output, report_dir="",
                               train=dataclasses.replace(run.train, random_seed=seed)), folder


def compare(config: CompareConfig, on_result=None) -> Comparison:
    """Trains and measures every module of config on the same split and seed; see the module docstring.

    Args:
      on_result: called with the Comparison so far after each module (the command writes
        comparison.json then, so an interrupted comparison keeps what it measured).

    Raises:
      UserError: nothing can be compared (no modules, no images, an unwritable output
        directory). A module that cannot be loaded or trained is recorded with its error
        and the others go on.
    """
    if not config.modules:
        raise UserError("No modules to compare: name them with --tfhub_module (repeat the flag).")
    run = config.run
    if not run.image_dir:
        raise UserError("Must set flag --image_dir.")
    image_lists.load(run.image_dir, run.split)  # Bad folders fail before any module loads.
    _check_writable(config.output_dir)
    seed = run.train.random_seed if run.train.random_seed is not None else random.SystemRandom().randrange(2**31)
    logging.info("Comparing %d modules on %s with random seed %d (the same split and seed for each).",
                 len(config.modules), run.image_dir, seed)
    results = []
    for index, handle in enumerate(config.modules):
        logging.info("Module %d of %d: %s", index + 1, len(config.modules), handle)
        module_config, folder = module_run_config(config, index, seed)
        try:
            with quiet.retracing_warnings_muted():
                trained = pipeline.run(module_config)
            results.append(_measured(trained, module_config, folder, config.latency_batch_size))
        except UserError as e:
            logging.warning("Module %s cannot be compared: %s", handle, e)
            results.append(ModuleResult(module=handle, folder=folder, error=str(e)))
        if on_result is not None:
            on_result(_comparison(results, config, seed))
    return _comparison(results, config, seed)


def _measured(result, module_config, folder: str, batch_size: int) -> ModuleResult:
    model = result.model
    graph = module_config.output.output_graph
    module = model.module
    speed = measure.graph_speed(graph, module_config.output.final_tensor_name, module.height, module.width, batch_size)
    ece, held_out_set = measure.expected_calibration_error(model)
    found = ModuleResult(
        module=module_config.tfhub_module,
        folder=folder,
        validation_accuracy=result.validation_accuracy,
        validation_count=result.validation_count,
        test_accuracy=result.test_accuracy,
        test_count=result.test_count,
        expected_calibration_error=ece,
        held_out_set=held_out_set,
        calibrated=result.calibration is not None,
        feature_size=module.feature_dim,
        input_size=(module.height, module.width),
        graph_bytes=storage.stat(graph).size,
        speed=speed,
        extraction_images_per_second=result.extraction_rate,
        bottlenecks_computed=result.bottlenecks_computed,
        bottlenecks_reused=result.bottlenecks_reused,
    )
    logging.info("%s: validation accuracy %s, test accuracy %s, %.1f ms per image (batch 1), %.0f images/s "
                 "(batch %d).", found.module, percent(found.validation_accuracy), percent(found.test_accuracy),
                 speed.latency_ms, speed.images_per_second, speed.batch_size)
    return found


def percent(value: float | None) -> str:
    """An accuracy in [0, 1] as '93.2%', or '-' when there is none."""
    return "-" if value is None else f"{value * 100:.1f}%"


def _comparison(results: list[ModuleResult], config: CompareConfig, seed: int) -> Comparison:
    usable = [i for i, r in enumerate(results) if not r.error and r.validation_accuracy is not None]
    # Ties on validation go to the smaller graph: latency is measured anew each run, and a
    # tie broken by its noise would recommend another module the next time.
    ranking = sorted(usable, key=lambda i: (-results[i].validation_accuracy, results[i].graph_bytes,
                                            results[i].latency_ms))
    return Comparison(
        modules=list(results),
        ranking=ranking,
        recommended=ranking[0] if ranking else None,
        pareto=pareto_front([(results[i].latency_ms, results[i].validation_accuracy) for i in usable], usable),
        seed=seed,
        output_dir=config.output_dir,
        image_dir=config.run.image_dir,
        split={"testing_percentage": config.run.split.testing_percentage,
               "validation_percentage": config.run.split.validation_percentage},
    )


def pareto_front(points: list[tuple[float, float]], ids: list[int]) -> list[int]:
    """The ids whose (cost, value) no other point beats: cost <= and value >= with one strictly; by cost."""
    front = []
    for i, (cost, value) in enumerate(points):
        beaten = any(c <= cost and v >= value and (c < cost or v > value) for c, v in points)
        if not beaten:
            front.append((cost, ids[i]))
    return [i for _, i in sorted(front)]


def _check_writable(folder: str) -> None:
    try:
        storage.check_writable(folder)
    except OSError as e:
        raise UserError(f"Cannot write to --output_dir {folder}: {e.strerror or e}") from e
