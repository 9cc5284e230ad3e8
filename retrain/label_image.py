"""label-image as a library: classify image files with an exported model, or evaluate it.

  import retrain
  run = retrain.classify(retrain.LabelImageConfig(graph="output_graph.pb",
                                                  labels="output_labels.txt", images=("x.jpg",)))
  for image in run.images:
      print(image.path, image.ranked(run.labels, 3))

  report = retrain.evaluate(retrain.LabelImageConfig(graph=..., labels=..., image_dir="holdout"))
  print(report.evaluation.accuracy)

label_image_main.py only renders what these return. Scores are those of TensorFlow's
label_image.py for the same graph and file; models written by retrain also give
calibrated scores and an "unknown" answer (see calibration).
"""

import dataclasses
from typing import Iterator

import numpy as np

from retrain import inference, scoring
from retrain.config import LabelImageConfig
from retrain.data import image_lists, storage
from retrain.errors import UserError
from retrain.evaluation import metrics


@dataclasses.dataclass
class ImageResult:
    """One image's answer.

    Attributes:
      path: the image file.
      scores: float32 [classes] in label order (the model's softmax), or None on error.
      calibrated_scores: float32 [classes], when the model is calibrated.
      error: why the file could not be classified, or None.
      true_label: with evaluation, the label its folder names.
      unknown: with an unknown threshold, whether the (calibrated) top score is below it.
    """

    path: str
    scores: np.ndarray | None
    calibrated_scores: np.ndarray | None = None
    error: str | None = None
    true_label: str | None = None
    unknown: bool = False

    def ranked(self, labels: list[str], top_k: int) -> list[tuple[str, float]]:
        """(label, score) of the top_k scores, best first."""
        order = self.scores.argsort()[::-1][:top_k]
        return [(labels[i], self.scores[i]) for i in order]

    @property
    def predicted(self) -> int:
        """Index of the top label."""
        return int(self.scores.argmax())

    @property
    def confidence(self) -> float:
        """The top score that the unknown threshold is compared with: calibrated when known."""
        chosen = self.calibrated_scores if self.calibrated_scores is not None else self.scores
        return float(chosen.max())


@dataclasses.dataclass
class Classification:
    """What classify() returns: every image's answer in order, and what could not be found or read.

    Attributes:
      labels: the model's labels in class order.
      images: ImageResults of the images that were classified.
      failed: (path, reason) for files that could not be classified.
      unknown_threshold: the threshold used for "unknown" answers, or None.
    """

    labels: list[str]
    images: list[ImageResult]
    failed: list[tuple[str, str]]
    unknown_threshold: float | None = None


@dataclasses.dataclass
class EvaluationRun(Classification):
    """What evaluate() returns: a Classification with the report and the folders skipped.

    Attributes:
      evaluation: evaluation.Evaluation of the classified images (None if none).
      skipped_folders: class folders whose name is not one of the model's labels.
      held_out: the accuracy on the images the model did not train on, when it records
        its split and this is its folder (HeldOut), else None.
      held_out_note: one sentence on what the accuracy includes.
    """

    evaluation: metrics.Evaluation | None = None
    skipped_folders: list[str] = dataclasses.field(default_factory=list)
    held_out: "HeldOut | None" = None
    held_out_note: str = ""


@dataclasses.dataclass
class HeldOut:
    """How a model fares on the images of its own training folder that it did not train on.

    Attributes:
      total: images evaluated; trained_on: how many of them were in its training set.
      validation_count, validation_accuracy, testing_count, testing_accuracy: per held-out
        set (accuracy None when the set is empty).
    """

    total: int
    trained_on: int
    validation_count: int
    validation_accuracy: float | None
    testing_count: int
    testing_accuracy: float | None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        sets = [f"{self.testing_accuracy:.4f} on its {self.testing_count} test images"
                if self.testing_accuracy is not None else "no test images",
                f"{self.validation_accuracy:.4f} on its {self.validation_count} validation images"
                if self.validation_accuracy is not None else "no validation images"]
        return (f"The model was trained on {self.trained_on} of these {self.total} images (its training set): "
                f"the accuracy above counts them. Held out: {sets[0]}; {sets[1]}.")


class Model:
    """A model and its labels, loaded and checked against each other, ready to classify files."""

    def __init__(self, config: LabelImageConfig):
        self.config = config
        self.classifier = inference.load_classifier(
            config.graph,
            input_layer=config.input_layer,
            output_layer=config.output_layer,
            signature=config.signature,
            height=config.input_height,
            width=config.input_width,
            allow_unsafe_ops=config.allow_unsafe_ops,
        )
        if config.labels:
            self.labels = inference.read_labels(config.labels)
        elif self.classifier.labels:
            self.labels = list(self.classifier.labels)
        else:
            raise UserError(
                f"{config.graph} does not carry its labels (a frozen graph never does): pass --labels, the labels "
                "file retrain wrote beside it."
            )
        count = self.classifier.class_count
        if count is not None and count != len(self.labels):
            source = config.labels or f"{config.graph}'s labels"
            raise UserError(f"{source} has {len(self.labels)} labels but the graph's output has {count} classes.")
        self.unknown_threshold = self._unknown_threshold()

    def _unknown_threshold(self) -> float | None:
        config = self.config
        if config.unknown_threshold is not None:
            return config.unknown_threshold
        if not config.unknown:
            return None
        calibration = self.classifier.calibration
        if calibration is None or calibration.unknown_threshold is None:
            raise UserError(
                f"{config.graph} carries no unknown threshold (it was not trained by this version of retrain "
                "with validation images); pass --unknown_threshold to choose one."
            )
        return calibration.unknown_threshold

    def classify_files(self, paths: list[str], truth: list[int] | None = None,
                       show_progress: bool | None = None) -> Iterator[ImageResult]:
        """Yields an ImageResult per path, in order; truth gives each one's true label index."""
        config = self.config
        results = inference.classify_files(
            self.classifier, paths, mean=config.input_mean, std=config.input_std,
            batch_size=config.batch_size, show_progress=show_progress,
        )
        for position, (path, answer, error) in enumerate(results):
            true_label = self.labels[truth[position]] if truth is not None else None
            if error is not None:
                yield ImageResult(path, None, error=error, true_label=true_label)
                continue
            if answer.scores.shape[0] != len(self.labels):
                raise UserError(
                    f"{config.labels} has {len(self.labels)} labels but the graph gave {answer.scores.shape[0]} scores."
                )
            calibrated = answer.calibrated
            if calibrated is None and self.classifier.calibration is not None:
                # The model carries its temperature but gives plain scores (serving_default).
                calibrated = scoring.rescale(answer.scores[np.newaxis], self.classifier.calibration.temperature)[0]
            result = ImageResult(path, answer.scores, calibrated, true_label=true_label)
            if self.unknown_threshold is not None:
                result.unknown = result.confidence < self.unknown_threshold
            yield result


def labelled_images(image_dir: str, labels: list[str], exclude_list: str = "") -> tuple[list[str], list[int], list[str], int]:
    """Images under image_dir/<class>/ (or image_dir/<split>/<class>/) whose folder names a label,
    but those exclude_list names (a file, see image_lists.read_exclude_list; '' for none).

    Returns:
      (image paths, their label indices, names of class folders that are no label, how
      many images exclude_list left out).

    Raises:
      UserError: no image is in a folder named after a label.
    """
    paths, truth, skipped = [], [], []
    excluded = image_lists.read_exclude_list(exclude_list, image_dir) if exclude_list else set()
    left_out = 0
    for dir_name, class_dir in image_lists.labelled_folders(image_dir):
        label = image_lists.label_from_dir_name(dir_name)
        if label not in labels:
            skipped.append(dir_name)
            continue
        for name in image_lists.list_images(class_dir):
            path = storage.join(class_dir, name)
            if excluded and storage.relative_path(path, image_dir).replace("\\", "/") in excluded:
                left_out += 1
                continue
            paths.append(path)
            truth.append(labels.index(label))
    if not paths:
        raise UserError(f"No images under {image_dir} in folders named after the labels ({', '.join(labels)}).")
    return paths, truth, skipped, left_out


@dataclasses.dataclass
class Job:
    """A model loaded and the images found, ready to run (see start()).

    Attributes:
      model: the loaded Model.
      paths: the image files, in the order they are classified.
      truth: with evaluation, each one's true label index; else None.
      missing: (name, error) for images named that do not exist.
      skipped_folders: with evaluation, class folders whose name is no label.
      left_out: with evaluation, images the exclude list left out.
    """

    model: Model
    paths: list[str]
    truth: list[int] | None
    missing: list[tuple[str, str]]
    skipped_folders: list[str]
    left_out: int = 0

    def results(self, show_progress: bool | None = False) -> Iterator[ImageResult]:
        """Classifies the images, yielding each ImageResult as soon as its batch is done."""
        return self.model.classify_files(self.paths, self.truth, show_progress=show_progress)


def start(config: LabelImageConfig) -> Job:
    """Loads config.graph and finds the images: config.image_dir's labelled folders with
    config.evaluate, else config.images (files and folders) and config.image_dir."""
    model = Model(config)
    if config.evaluate:
        if not config.image_dir:
            raise UserError("Evaluation needs image_dir, a folder with one sub-folder of images per class.")
        paths, truth, skipped, left_out = labelled_images(config.image_dir, model.labels, config.exclude_list)
        return Job(model, paths, truth, [], skipped, left_out)
    paths, missing = inference.find_images(list(config.images) + ([config.image_dir] if config.image_dir else []))
    return Job(model, paths, None, missing, [])


def evaluation_of(model: Model, results: list[ImageResult]) -> metrics.Evaluation:
    """The evaluation report of classified ImageResults that carry their true label."""
    scored = [r for r in results if r.scores is not None]
    return metrics.evaluate(
        np.array([model.labels.index(r.true_label) for r in scored], np.int64),
        np.array([r.predicted for r in scored], np.int64),
        np.array([float(r.scores.max()) for r in scored]),
        model.labels,
        confidences=np.array([r.confidence for r in scored]),
        threshold=model.unknown_threshold,
    )


def held_out_of(model: Model, results: list[ImageResult], image_dir: str) -> tuple[HeldOut | None, str]:
    """(The accuracy on the images the model did not train on, or None; a sentence on what
    the whole folder's accuracy includes), from the split the model records."""
    record = model.classifier.training_split
    scored = [r for r in results if r.scores is not None]
    if not record:
        return None, ("The model does not say which images it was trained on (retrain.py's graphs and earlier "
                      "versions' do not): if these are its training images, the accuracy above includes them.")
    sets = image_lists.recorded_sets(record, image_dir, [r.path for r in scored])
    if sets is None:
        return None, (f"The model was trained on {record.get('image_dir')}, not on this folder: every image here "
                      "counts as held out (unless the folders share images).")
    hits = np.array([r.predicted == model.labels.index(r.true_label) for r in scored])
    sets = np.array(sets)

    def accuracy(category):
        chosen = sets == category
        return int(chosen.sum()), (float(hits[chosen].mean()) if chosen.any() else None)

    held = HeldOut(len(scored), int(np.sum(sets == "training")), *accuracy("validation"), *accuracy("testing"))
    return held, held.describe()


def write_report(model: Model, results: list[ImageResult], config: LabelImageConfig) -> str:
    """The HTML report of evaluated ImageResults in config.report_dir; returns index.html's path."""
    from retrain.evaluation import report

    scored = [r for r in results if r.scores is not None]
    calibrated = [r.calibrated_scores for r in scored]
    data = report.ReportData(
        title=report.title_for(config.graph, config.image_dir),
        labels=model.labels,
        image_paths=[r.path for r in scored],
        truth=np.array([model.labels.index(r.true_label) for r in scored], np.int64),
        scores=np.stack([r.scores for r in scored]),
        calibrated=np.stack(calibrated) if scored and all(c is not None for c in calibrated) else None,
        unknown_threshold=model.unknown_threshold,
    )
    return report.write_report(config.report_dir, data)


def _collect(job: Job, show_progress) -> tuple[list[ImageResult], list[tuple[str, str]]]:
    images, failures = [], list(job.missing)
    for result in job.results(show_progress):
        if result.error is None:
            images.append(result)
        else:
            failures.append((result.path, result.error))
    return images, failures


def classify(config: LabelImageConfig, show_progress: bool | None = False) -> Classification:
    """Classifies config.images (files and folders) and config.image_dir with config.graph."""
    job = start(dataclasses.replace(config, evaluate=False))
    images, failures = _collect(job, show_progress)
    return Classification(job.model.labels, images, failures, job.model.unknown_threshold)


def evaluate(config: LabelImageConfig, show_progress: bool | None = False) -> EvaluationRun:
    """Classifies every image of the labelled folder config.image_dir and reports how well it went."""
    if config.report_dir:
        from retrain.evaluation import report as report_lib

        report_lib.check_available()
    job = start(dataclasses.replace(config, evaluate=True))
    images, failures = _collect(job, show_progress)
    report = evaluation_of(job.model, images) if images else None
    if config.report_dir and images:
        write_report(job.model, images, config)
    held_out, note = held_out_of(job.model, images, config.image_dir) if images else (None, "")
    return EvaluationRun(job.model.labels, images, failures, job.model.unknown_threshold, report, job.skipped_folders,
                         held_out, note)
