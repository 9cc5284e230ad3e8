"""Find the labelled images under image_dir and split them, exactly as retrain.py did.

Pure Python (no TensorFlow): the split is a function of the file path alone, so the same
``image_dir`` string gives the same training / validation / testing sets on every run and
every machine, and the same sets as the original retrain.py.
"""

import collections
import hashlib
import re

from absl import logging

from retrain import config
from retrain.data import storage
from retrain.errors import UserError

# Matched case-insensitively. The original globbed JPEG and lowercase png only; the
# decoder reads these by content, so a wrongly named file still works.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")

CATEGORIES = ("training", "testing", "validation")

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
    joins paths by hand.
    """

    def __init__(self, root: str = "", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.root = root

    def image_path(self, label: str, file_name: str) -> str:
        """The full path of image file_name (as listed) of class label."""
        return storage.join(self.root, self.relative_path(label, file_name))

    def relative_path(self, label: str, file_name: str) -> str:
        """The image's path under root: '<class folder>/<file_name>'."""
        return storage.join(self[label]["dir"], file_name)

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
    result = ImageLists(image_dir)
    for dir_name in list_class_dirs(image_dir):
        logging.info("Looking for images in '%s'", dir_name)
        try:
            file_names = list_images(storage.join(image_dir, dir_name))
        except OSError as e:
            raise UserError(f"Cannot read image folder '{dir_name}' in '{image_dir}': {e}") from e
        if not file_names:
            logging.warning("No files found")
            continue
        if len(file_names) < config.FEW_IMAGES_WARNING_THRESHOLD:
            logging.warning("WARNING: Folder has less than 20 images, which may cause issues.")
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


def load(image_dir: str, split) -> ImageLists:
    """create_image_lists for a SplitConfig, checked as every command checks it: at least
    two classes (UserError), and a warning for each class with an empty set."""
    lists = create_image_lists(image_dir, split.testing_percentage, split.validation_percentage)
    check_enough_classes(lists, image_dir)
    warn_about_empty_sets(lists)
    return lists


def check_enough_classes(image_lists: dict, image_dir: str) -> None:
    """Raises UserError, with the original's wording, unless there are two classes or more."""
    if not image_lists:
        raise UserError(f"No valid folders of images found at {image_dir}")
    if len(image_lists) == 1:
        raise UserError(
            f"Only one valid folder of images found at {image_dir} "
            " - multiple classes are needed for classification."
        )


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
