"""Find the labelled images under image_dir and split them, exactly as retrain.py did.

Pure Python (no TensorFlow): the split is a function of the file path alone, so the same
``image_dir`` string gives the same training / validation / testing sets on every run and
every machine, and the same sets as the original retrain.py.
"""

import collections
import hashlib
import os
import re

from absl import logging

from retrain import config
from retrain.data import storage
from retrain.errors import UserError

# Matched case-insensitively. The original globbed JPEG and lowercase png only; the
# decoder reads these by content, so a wrongly named file still works.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")

CATEGORIES = ("training", "testing", "validation")

# Folder names (any case) that hold a split rather than a class, when they hold class
# folders: how Keras' image_dataset_from_directory, Kaggle and most downloads lay sets out.
SPLIT_FOLDER_NAMES = {
    "train": "training", "training": "training",
    "val": "validation", "valid": "validation", "validation": "validation", "dev": "validation",
    "test": "testing", "testing": "testing",
}

_NOHASH = re.compile(r"_nohash_.*$")
_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9]+")


def label_from_dir_name(dir_name: str) -> str:
    """The label retrain.py derives from a class folder name.

    Lower-cases, then turns every run of characters outside ``[a-z0-9]`` into one
    space, without stripping: ``Sun-Flowers__2`` -> ``sun flowers 2``.
    """
    return _NOT_LABEL_CHARS.sub(" ", dir_name.lower())


def split_percentage(file_name: str) -> float:
    """The position in [0, 100) of a file in the split, from a hash of its path.

    ``file_name`` is the path as ``os.path.join(image_dir, dir_name, base_name)``
    spells it. Everything from ``_nohash_`` on is ignored, so files that differ only
    there (several recordings of one subject) always land in the same set.
    """
    hash_name = _NOHASH.sub("", file_name)
    digest = int(hashlib.sha1(hash_name.encode("utf-8")).hexdigest(), 16)
    bucket = digest % (config.MAX_NUM_IMAGES_PER_CLASS + 1)
    return bucket * (100.0 / config.MAX_NUM_IMAGES_PER_CLASS)


def which_set(file_name: str, testing_percentage: float, validation_percentage: float) -> str:
    """'training', 'testing' or 'validation' for one image path (see split_percentage)."""
    percentage = split_percentage(file_name)
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def is_image_file_name(name: str) -> bool:
    """True for a visible file whose extension is one of IMAGE_EXTENSIONS (any case)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_class_dirs(image_dir: str) -> list[str]:
    """The immediate visible sub-folder names of image_dir, in code-point order.

    retrain.py ordered classes by their sorted folder paths; for the sub-folders of
    one folder that is the sorted order of their names.

    Raises:
      UserError: image_dir is missing, or its filesystem refuses (no bucket, no
        credentials).
    """
    try:
        found = storage.isdir(image_dir)
        if found:
            _, names, _ = next(iter(storage.walk(image_dir)))
    except OSError as e:
        raise UserError(f"Cannot read image directory '{image_dir}': {e}") from e
    if not found:
        raise UserError(f"Image directory '{image_dir}' not found.")
    return sorted(name for name in names if not name.startswith("."))


def list_images(class_dir: str) -> list[str]:
    """Image paths under class_dir, relative to it and sorted; nested folders included.

    The original looked only at the class folder itself (and looked up nested
    folders in the wrong place); here every image below the class folder belongs to
    the class. Sorting makes the order, and so seeded sampling, reproducible.

    What is named like an image but is no regular file (a FIFO, a socket, a device, a
    broken link) is skipped with a warning, never opened; links to folders are not
    followed, so a link loop ends the walk.
    """
    found = []
    for root, dirs, files in storage.walk(class_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not is_image_file_name(name):
                continue
            path = storage.join(root, name)
            problem = storage.not_a_file(path)
            if problem:
                logging.warning("Skipping %s: it %s.", path, problem)
                continue
            found.append(storage.relative_path(path, class_dir))
    return sorted(found)


class ImageLists(collections.OrderedDict):
    """label -> {"dir", "training", "testing", "validation"} in class order, and their root.

    "dir" is the class folder's name under root; the three lists hold image paths
    relative to that folder. image_path() gives an image's full path, so no consumer
    joins paths by hand. With split folders (train/cats/x.jpg) "dir" is '' and the
    paths start with the split folder.

    Attributes:
      root: the image_dir.
      split: how the sets were made: {"layout": "class folders" or "split folders",
        "testing_percentage", "validation_percentage", and with split folders
        "folders": {category: [folder names], or [] where carved by the hash}}.
    """

    def __init__(self, root: str = "", *args, split: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.root = root
        self.split = split or {}

    def image_path(self, label: str, file_name: str) -> str:
        """The full path of image file_name (as listed) of class label."""
        return storage.join(self.root, self.relative_path(label, file_name))

    def relative_path(self, label: str, file_name: str) -> str:
        """The image's path under root: '<class folder>/<file_name>'."""
        return storage.join(self[label]["dir"], file_name)

    def record(self) -> dict:
        """What a model keeps of the split it was trained on, to tell later which images it saw:
        split, plus image_dir as given (the split hashes paths spelled from it) and, for a local
        folder, its absolute path (to know it again)."""
        absolute = os.path.realpath(self.root) if storage.is_local(self.root) else self.root
        return {**self.split, "image_dir": self.root, "absolute_image_dir": absolute}

    def paths(self, category: str) -> list[str]:
        """The full paths of one category's images, in class order then list order."""
        return [self.image_path(label, name) for label, sets in self.items() for name in sets[category]]


def create_image_lists(image_dir: str, testing_percentage: float, validation_percentage: float) -> ImageLists:
    """Builds the labelled, split lists of images under image_dir.

    Args:
      image_dir: folder with one sub-folder of images per class.
      testing_percentage: share of images (0-100) reserved for the final test.
      validation_percentage: share of images (0-100) used to validate during training.

    Returns:
      ImageLists rooted at image_dir, in class order, mapping each label to a dict
      with the keys ``dir`` (the folder name under image_dir) and ``training``,
      ``testing`` and ``validation`` (lists of file names relative to that folder).

    Raises:
      UserError: image_dir does not exist or cannot be read.
    """
    dir_names = list_class_dirs(image_dir)
    splits = split_folders(image_dir, dir_names)
    if splits:
        return _lists_from_split_folders(image_dir, splits, testing_percentage, validation_percentage)
    result = ImageLists(image_dir, split={"layout": "class folders", "testing_percentage": testing_percentage,
                                          "validation_percentage": validation_percentage})
    for dir_name in dir_names:
        logging.info("Looking for images in '%s'", dir_name)
        try:
            file_names = list_images(storage.join(image_dir, dir_name))
        except OSError as e:
            raise UserError(f"Cannot read image folder '{dir_name}' in '{image_dir}': {e}") from e
        if not file_names:
            logging.warning("No files found (in '%s')", dir_name)
            continue
        if len(file_names) < config.FEW_IMAGES_WARNING_THRESHOLD:
            _warn_few(dir_name, len(file_names))
        elif len(file_names) > config.MAX_NUM_IMAGES_PER_CLASS:
            logging.warning(
                "WARNING: Folder %s has more than %s images. Some images will never be selected.",
                dir_name,
                config.MAX_NUM_IMAGES_PER_CLASS,
            )
        label_name = label_from_dir_name(dir_name)
        sets = {category: [] for category in CATEGORIES}
        for file_name in file_names:
            # The original hashed os.path.join(image_dir, dir_name, base name).
            full_name = storage.join(image_dir, dir_name, file_name)
            sets[which_set(full_name, testing_percentage, validation_percentage)].append(file_name)
        if label_name in result:
            # As in the original, the later folder replaces the earlier one's images.
            logging.warning(
                "Folders '%s' and '%s' both give the label '%s'; only '%s' is used.",
                result[label_name]["dir"],
                dir_name,
                label_name,
                dir_name,
            )
        result[label_name] = {"dir": dir_name, **sets}
    return result


def _warn_few(folder: str, count: int) -> None:
    # retrain.py's line, then the folder it means.
    logging.warning("WARNING: Folder has less than 20 images, which may cause issues. ('%s' has %d.)", folder, count)


def split_folders(image_dir: str, dir_names: list[str]) -> dict[str, list[str]]:
    """{category: its folders} when image_dir's folders are split folders (train/, val/, test/,
    any case, each holding class folders); {} when they are class folders.

    A folder named like a split that holds images rather than folders is a class.

    Raises:
      UserError: split folders and class folders side by side.
    """
    splits, classes = {}, []
    for name in dir_names:
        category = SPLIT_FOLDER_NAMES.get(name.lower())
        if category and list_class_dirs(storage.join(image_dir, name)):
            splits.setdefault(category, []).append(name)
        else:
            classes.append(name)
    if splits and classes:
        raise UserError(
            f"{image_dir} holds split folders ({', '.join(sorted(n for v in splits.values() for n in v))}) and "
            f"class folders ({', '.join(classes)}) side by side: keep one layout, one folder per class, or "
            "train/, val/ and test/ folders each holding one folder per class."
        )
    return splits


def _lists_from_split_folders(image_dir: str, splits: dict[str, list[str]], testing_percentage: float,
                              validation_percentage: float) -> ImageLists:
    """ImageLists from split folders: each set as given; validation (or testing) carved from
    training by retrain.py's hash of each path when there is no folder for it."""
    by_class: dict[str, dict[str, list[str]]] = {}
    for category in CATEGORIES:
        for split in splits.get(category, []):
            for class_dir in list_class_dirs(storage.join(image_dir, split)):
                logging.info("Looking for images in '%s'", storage.join(split, class_dir))
                try:
                    names = list_images(storage.join(image_dir, split, class_dir))
                except OSError as e:
                    raise UserError(f"Cannot read image folder '{split}/{class_dir}' in '{image_dir}': {e}") from e
                sets = by_class.setdefault(class_dir, {c: [] for c in CATEGORIES})
                sets[category].extend(storage.join(split, class_dir, name) for name in names)
    carve_testing = 0 if splits.get("testing") else testing_percentage
    carve_validation = 0 if splits.get("validation") else validation_percentage
    if carve_testing or carve_validation:
        for sets in by_class.values():
            kept = []
            for name in sets["training"]:
                chosen = which_set(storage.join(image_dir, name), carve_testing, carve_validation)
                (kept if chosen == "training" else sets[chosen]).append(name)
            sets["training"] = kept
    result = ImageLists(image_dir, split={
        "layout": "split folders", "testing_percentage": carve_testing, "validation_percentage": carve_validation,
        "folders": {category: list(splits.get(category, [])) for category in CATEGORIES},
    })
    for class_dir in sorted(by_class):
        sets = by_class[class_dir]
        count = sum(len(names) for names in sets.values())
        if not count:
            logging.warning("No files found (in '%s')", class_dir)
            continue
        if count < config.FEW_IMAGES_WARNING_THRESHOLD:
            _warn_few(class_dir, count)
        for category, folders in splits.items():
            if not sets[category]:
                logging.warning("Class '%s' has no images in %s: it has no %s images.", class_dir,
                                " or ".join(f"{folder}/" for folder in folders), category)
        result[label_from_dir_name(class_dir)] = {"dir": "", **{c: sorted(sets[c]) for c in CATEGORIES}}
    logging.info("Using the split folders of %s: %s.", image_dir, "; ".join(_describe_split(result, category, splits)
                                                                            for category in CATEGORIES))
    return result


def _describe_split(lists: ImageLists, category: str, splits: dict) -> str:
    count = sum(len(sets[category]) for sets in lists.values())
    if splits.get(category):
        return f"{category} from {', '.join(folder + '/' for folder in splits[category])} ({count} images)"
    percentage = lists.split[f"{category}_percentage"]
    return (f"{category} carved from the training folders by each path's hash ({percentage:g}%, {count} images)"
            if percentage else f"no {category} images")


def labelled_folders(image_dir: str) -> list[tuple[str, str]]:
    """(class folder name, its path) of every class folder under image_dir, in either layout:
    its sub-folders, or the class folders of its split folders (train/cats, test/cats, ...)."""
    dir_names = list_class_dirs(image_dir)
    splits = split_folders(image_dir, dir_names)
    if not splits:
        return [(name, storage.join(image_dir, name)) for name in dir_names]
    folders = [folder for category in CATEGORIES for folder in splits.get(category, [])]
    return [(name, storage.join(image_dir, folder, name)) for folder in folders
            for name in list_class_dirs(storage.join(image_dir, folder))]


def recorded_sets(record: dict, image_dir: str, paths: list[str]) -> list[str] | None:
    """The set ('training', 'validation', 'testing') each image of image_dir was in when a model
    recorded its split (ImageLists.record), or None when image_dir is not the folder it was
    trained on (or the model recorded nothing)."""
    if not record or "absolute_image_dir" not in record:
        return None
    here = os.path.realpath(image_dir) if storage.is_local(image_dir) else image_dir
    if here != record["absolute_image_dir"]:
        return None
    given = {folder: category for category, folders in record.get("folders", {}).items() for folder in folders}
    testing, validation = record.get("testing_percentage", 0), record.get("validation_percentage", 0)
    sets = []
    for path in paths:
        relative = storage.relative_path(path, image_dir)
        category = given.get(relative.replace(os.sep, "/").split("/")[0], "training") if given else "training"
        if category == "training":
            # Spelled as at training time: the split hashes each path as retrain.py built it.
            category = which_set(storage.join(record["image_dir"], relative), testing, validation)
        sets.append(category)
    return sets


def load(image_dir: str, split) -> ImageLists:
    """create_image_lists for a SplitConfig, without the images its exclude_list names, checked
    as every command checks it: at least two classes (UserError), and a warning for each
    class with an empty set."""
    lists = create_image_lists(image_dir, split.testing_percentage, split.validation_percentage)
    if split.exclude_list:
        lists = without_excluded(lists, read_exclude_list(split.exclude_list, image_dir), split.exclude_list)
    check_enough_classes(lists, image_dir)
    warn_about_empty_sets(lists)
    return lists


def read_exclude_list(path: str, image_dir: str) -> set[str]:
    """The images an exclude list names, as paths relative to image_dir with '/' (blank lines
    and lines starting with '#' are skipped; absolute paths under image_dir are made relative).

    Raises:
      UserError: the file cannot be read.
    """
    try:
        text = storage.read_text(path)
    except OSError as e:
        raise UserError(f"Cannot read --exclude_list {path}: {e.strerror or e}") from e
    root = image_dir.rstrip("/\\") + "/"
    listed = set()
    for line in text.splitlines():
        entry = line.rstrip("\r\n").replace("\\", "/")
        if not entry.strip() or entry.startswith("#"):
            continue
        if entry.startswith(root.replace("\\", "/")):
            entry = entry[len(root):]
        listed.add(entry[2:] if entry.startswith("./") else entry)
    return listed


def without_excluded(lists: ImageLists, excluded: set[str], source: str) -> ImageLists:
    """lists without the images whose path relative to its root is in excluded; every other
    image keeps its set (each image's set hashes its own path). Logs how many were left out."""
    result = ImageLists(lists.root, split={**lists.split, "excluded": 0})
    found = set()
    for label, sets in lists.items():
        kept = {}
        for category in CATEGORIES:
            names = []
            for name in sets[category]:
                relative = lists.relative_path(label, name).replace("\\", "/")
                if relative in excluded:
                    found.add(relative)
                else:
                    names.append(name)
            kept[category] = names
        if any(kept.values()):
            result[label] = {"dir": sets["dir"], **kept}
        else:
            logging.warning("Every image of class '%s' is in %s: the class is left out.", label, source)
    result.split["excluded"] = len(found)
    missing = len(excluded) - len(found)
    logging.info("Left out %d images listed in %s%s.", len(found), source,
                 f" ({missing} listed are not in {lists.root})" if missing else "")
    return result


def check_enough_classes(image_lists: dict, image_dir: str) -> None:
    """Raises UserError, with the original's wording and the layout expected, unless there
    are two classes or more."""
    if not image_lists:
        loose = [name for name in _files_in(image_dir) if is_image_file_name(name)]
        if loose:
            parent = storage.dirname(image_dir.rstrip("/")) or "."
            raise UserError(
                f"No valid folders of images found at {image_dir}: it holds {len(loose)} images but no class folders, "
                f"as one class's own folder would. Give the folder above it, {parent}, which should hold "
                + _expected_layout(parent)
            )
        raise UserError(f"No valid folders of images found at {image_dir}. It should hold " + _expected_layout(image_dir))
    if len(image_lists) == 1:
        raise UserError(
            f"Only one valid folder of images found at {image_dir} "
            " - multiple classes are needed for classification. It should hold " + _expected_layout(image_dir)
        )


def _expected_layout(image_dir: str) -> str:
    """The layouts accepted, shown on image_dir (two more lines)."""
    return (f"one sub-folder of images per class:\n  {storage.join(image_dir, 'roses', 'photo1.jpg')}\n  "
            f"{storage.join(image_dir, 'tulips', 'photo2.jpg')}   (or train/, val/, test/ each holding class folders)")


def _files_in(folder: str) -> list[str]:
    try:
        return next(iter(storage.walk(folder)))[2]
    except (OSError, StopIteration):
        return []


def warn_about_empty_sets(image_lists: dict) -> None:
    """Warns for each class with an empty set (small classes); the rest still work."""
    for label, lists in image_lists.items():
        for category in CATEGORIES:
            if not lists[category]:
                logging.warning(
                    "Label '%s' has no images in the category %s; it is left out of %s.",
                    label,
                    category,
                    category,
                )
