"""Every image of the folder examined: bottlenecks from retrain's cache, facts from the files,
then each check (label issues, duplicates, outliers, shortcuts, the folder itself).

The images, split and cache entries are exactly retrain's (the same walk, split, module
and entry names, through training.modes' cached fill), so running the doctor before or
after retrain costs no extra extraction. Nothing in the folder is moved or changed.
"""

import dataclasses

import numpy as np
from absl import logging

from retrain.cache import plan
from retrain.config import DoctorConfig
from retrain.data import image_lists, storage
from retrain.data.preprocessing import Preprocessing
from retrain.doctor import duplicates, facts as facts_lib, label_issues, outliers, shortcuts
from retrain.errors import UserError
from retrain.module import hub
from retrain.runtime.progress import Progress
from retrain.training import modes

# The tutorial's advice: at least 100 images per class.
MIN_CLASS_IMAGES = 100
# Largest class over smallest above this: imbalance worth saying.
MAX_IMBALANCE = 3.0
TINY_SIDE = 32  # Pixels: images with a side below this are thumbnails or icons.
BLANK_CONTRAST = 2.0  # Grey-level standard deviation below this: a blank image.
# Outliers listed: this share of the images (at least MIN_OUTLIERS, at most MAX_OUTLIERS).
OUTLIER_SHARE = 0.02
MIN_OUTLIERS, MAX_OUTLIERS = 10, 500
# An outlier is proposed for leaving out when its own label is also this unlikely out of fold.
OUTLIER_EXCLUDE_BELOW = 0.5


@dataclasses.dataclass(frozen=True)
class LabelIssue:
    """An image whose label is likely wrong: its index, the label index suggested, and its
    label quality (the out-of-fold probability of its given label, in [0, 1]: low is bad)."""

    index: int
    suggested: int
    score: float


@dataclasses.dataclass(frozen=True)
class ClassCount:
    label: str
    count: int
    training: int
    validation: int
    testing: int


@dataclasses.dataclass
class Diagnosis:
    """What the doctor found in an image folder.

    Attributes:
      image_dir: the folder; labels: class names in class order.
      paths: the n images examined (full paths); relative: the same relative to image_dir, with '/'.
      label_of: int [n] class index of each image; set_of: its set ('training', 'validation', 'testing').
      label_issues: ranked, most likely wrong first; estimated_label_errors: how many labels
        cleanlab estimates are wrong in all.
      probabilities: float [n, classes] out-of-fold probabilities.
      duplicates: groups of copies (exact first).
      outliers: (index, score in [0, 1], low = atypical), most atypical first.
      shortcuts: classes a cue alone predicts.
      classes: per class counts.
      tiny, blank: indices of images with a side under TINY_SIDE pixels, or no contrast.
      unreadable: (path, reason) of files that are no readable image.
      split_named: class folders named like a split (train, test, val...).
      notes: one line per folder-level finding, for the summary.
      excluded: indices of the images a user would most likely leave out, in path order.
      leaked_test_images: test images with a copy in training: the test accuracy counts them.
      folds: how many out-of-fold heads gave the probabilities (fewer than asked when a
        class has fewer images).
    """

    image_dir: str
    labels: list[str]
    paths: list[str]
    relative: list[str]
    label_of: np.ndarray
    set_of: list[str]
    label_issues: list[LabelIssue]
    estimated_label_errors: int
    probabilities: np.ndarray
    duplicates: list[duplicates.DuplicateGroup]
    outliers: list[tuple[int, float]]
    shortcuts: list[shortcuts.Shortcut]
    classes: list[ClassCount]
    tiny: list[int]
    blank: list[int]
    unreadable: list[tuple[str, str]]
    split_named: list[str]
    notes: list[str]
    excluded: list[int]
    leaked_test_images: int
    folds: int = 0

    def labels_differ(self, group: duplicates.DuplicateGroup) -> bool:
        """A label conflict: the copies are in different classes."""
        return len({int(self.label_of[i]) for i in group.members}) > 1

    def sets_differ(self, group: duplicates.DuplicateGroup) -> bool:
        """A leak: the copies are in different sets (training, validation, testing)."""
        return len({self.set_of[i] for i in group.members}) > 1


def examine(config: DoctorConfig) -> Diagnosis:
    """Examines config.run.image_dir; see the module docstring.

    Raises:
      UserError: a bad folder or module, too few images, or cleanlab missing.
    """
    label_issues.check_available()
    run = config.run
    if not run.image_dir:
        raise UserError("Must set flag --image_dir.")
    lists = image_lists.load(run.image_dir, run.split)
    extractor = hub.load_for_run(run)
    preprocessing = Preprocessing(extractor.height, extractor.width, run.fast_jpeg_decode)
    context = modes.ModeContext(run, lists, extractor, preprocessing, config.seed)
    (entries,) = context.entry_groups(plan.PLAIN)
    found = context.fill_from_files(entries)
    features, label_of, paths, set_of = _gathered(found.sets)
    if len(paths) < 10 or len(np.unique(label_of)) < 2:
        raise UserError(f"Too few readable images under {run.image_dir} to examine: {len(paths)}.")
    logging.info("Examining %d images of %d classes.", len(paths), len(lists))
    with Progress(len(paths), "Reading image facts") as progress:
        facts = facts_lib.read_facts(paths, progress=progress.update)
    readable = facts.widths > 0
    labels = list(lists)

    issues = label_issues.find(features, label_of, len(labels), folds=config.folds, seed=config.seed)
    ranked_issues = [LabelIssue(int(i), int(np.argmax(issues.probabilities[i])),
                                float(issues.probabilities[i, label_of[i]])) for i in issues.ranked]
    logging.info("Label issues: %d flagged (cleanlab estimates %d labels are wrong).", len(ranked_issues),
                 issues.estimated_errors)
    groups = duplicates.find(features, facts, readable, paths)
    outlier_scores = outliers.scores(features)
    listed = int(np.clip(round(OUTLIER_SHARE * len(paths)), MIN_OUTLIERS, MAX_OUTLIERS))
    outlier_list = [(int(i), float(outlier_scores[i])) for i in outliers.ranked(outlier_scores, listed)]
    cue_shortcuts = shortcuts.find(facts, label_of, readable, seed=config.seed)

    root = run.image_dir
    relative = [storage.relative_path(path, root).replace("\\", "/") for path in paths]
    diagnosis = Diagnosis(
        image_dir=root, labels=labels, paths=paths, relative=relative, label_of=label_of, set_of=set_of,
        label_issues=ranked_issues, estimated_label_errors=issues.estimated_errors,
        probabilities=issues.probabilities, duplicates=groups, outliers=outlier_list, shortcuts=cue_shortcuts,
        classes=_class_counts(labels, label_of, set_of, lists),
        tiny=[int(i) for i in np.flatnonzero(readable & (np.minimum(facts.widths, facts.heights) < TINY_SIDE))],
        blank=[int(i) for i in np.flatnonzero(readable & (facts.contrast < BLANK_CONTRAST))],
        unreadable=list(found.failed_images),
        split_named=[sets["dir"] for sets in lists.values()
                     if lists.split.get("layout") == "class folders"
                     and sets["dir"].lower() in image_lists.SPLIT_FOLDER_NAMES],
        notes=[], excluded=[], leaked_test_images=0, folds=issues.folds,
    )
    diagnosis.leaked_test_images = _leaked_test_images(diagnosis)
    diagnosis.notes = _folder_notes(diagnosis)
    diagnosis.excluded = _to_exclude(diagnosis)
    return diagnosis


def _gathered(sets: dict):
    """(features float32 [n, dim], labels int [n], paths, sets) of every image, in path order."""
    rows = [(path, category, label, i) for category, chosen in sets.items()
            for i, (path, label) in enumerate(zip(chosen.image_paths, chosen.labels))]
    rows.sort(key=lambda row: row[0])
    features = np.stack([sets[category].features[i] for _, category, _, i in rows]) if rows else np.zeros((0, 1))
    return (np.asarray(features, np.float32), np.asarray([label for _, _, label, _ in rows], np.int64),
            [path for path, _, _, _ in rows], [category for _, category, _, _ in rows])


def _class_counts(labels, label_of, set_of, lists) -> list[ClassCount]:
    counts = []
    sets = np.asarray(set_of)
    for index, label in enumerate(labels):
        mine = label_of == index
        counts.append(ClassCount(label, int(mine.sum()), int((mine & (sets == "training")).sum()),
                                 int((mine & (sets == "validation")).sum()), int((mine & (sets == "testing")).sum())))
    return counts


def _leaked_test_images(diagnosis: Diagnosis) -> int:
    """Test images in a group with a training image."""
    leaked = set()
    for group in diagnosis.duplicates:
        sets = {diagnosis.set_of[i] for i in group.members}
        if "training" in sets:
            leaked.update(i for i in group.members if diagnosis.set_of[i] == "testing")
    return len(leaked)


def _folder_notes(d: Diagnosis) -> list[str]:
    notes = []
    small = [c for c in d.classes if c.count < MIN_CLASS_IMAGES]
    if small:
        notes.append(f"{len(small)} classes have fewer than {MIN_CLASS_IMAGES} images (the tutorial's minimum): "
                     + ", ".join(f"{c.label} ({c.count})" for c in small[:8]) + ("..." if len(small) > 8 else ""))
    counts = [c.count for c in d.classes if c.count]
    if counts and max(counts) > MAX_IMBALANCE * min(counts):
        largest = max(d.classes, key=lambda c: c.count)
        smallest = min((c for c in d.classes if c.count), key=lambda c: c.count)
        notes.append(f"Classes are imbalanced: {largest.label} has {largest.count} images, {smallest.label} "
                     f"{smallest.count} ({largest.count / smallest.count:.1f}x).")
    if d.split_named:
        notes.append(f"Class folders named like a split: {', '.join(d.split_named)}. For your own split, put "
                     "class folders inside train/, val/, test/.")
    if d.tiny:
        notes.append(f"{len(d.tiny)} images have a side under {TINY_SIDE} pixels (icons or thumbnails?).")
    if d.blank:
        notes.append(f"{len(d.blank)} images are blank (one colour).")
    if d.unreadable:
        notes.append(f"{len(d.unreadable)} files are not readable images (see the log).")
    return notes


def _to_exclude(d: Diagnosis) -> list[int]:
    """The images a user would most likely leave out: the labels cleanlab estimates wrong (its
    first estimated_label_errors), every copy but one per duplicate group (the one kept: a
    training image whose label the out-of-fold heads agree with, if any), blank images, and
    outliers whose own label is also unlikely."""
    chosen = {issue.index for issue in d.label_issues[:d.estimated_label_errors]}
    for group in d.duplicates:
        def keep_rank(i):
            agrees = int(np.argmax(d.probabilities[i])) == d.label_of[i]
            return (not agrees, d.set_of[i] != "training", d.relative[i])
        kept = min(group.members, key=keep_rank)
        chosen.update(i for i in group.members if i != kept)
    chosen.update(d.blank)
    chosen.update(i for i, _ in d.outliers if d.probabilities[i, d.label_of[i]] < OUTLIER_EXCLUDE_BELOW)
    return sorted(chosen, key=lambda i: d.relative[i])
