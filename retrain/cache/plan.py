"""Which cache entries a run calls for: the one plan that retrain, retrain-cache and Beam share.

An entry is one bottleneck to have: an image, its set, and where it is cached (see
cache.layout). Validation and test images always get their plain bottleneck. Training
images get what the training mode asks for (TrainingImages): their plain bottleneck,
k distorted copies each, or nothing (distorted anew at every step). Entries come in
retrain.py's order: classes in class order, then training, testing, validation, then
each list's order; a run fills them group by group (held-out images first when the
training images are cached apart).
"""

import dataclasses

from retrain.cache import layout
from retrain.data.image_lists import CATEGORIES, ImageLists

HELD_OUT = ("testing", "validation")


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One bottleneck to have: which image, which set, and where it is cached.

    copy_index is None for the plain bottleneck of an image, or the number of one of
    its distorted copies.
    """

    label_index: int
    category: str
    image_path: str
    relative_path: str
    cache_path: str
    copy_index: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainingImages:
    """How a training mode keeps the training images in the cache.

    Attributes:
      cached: False when training images are not cached at all (distorted anew at
        every step); their plain bottlenecks are then not computed either.
      copies: 0 for each image's plain bottleneck; k > 0 for k distorted copies each.
      copy_tag: names the distortion settings of the copies (data.distortions.settings_tag).
    """

    cached: bool = True
    copies: int = 0
    copy_tag: str = ""


PLAIN = TrainingImages()
NOT_CACHED = TrainingImages(cached=False)


def entries(
    lists: ImageLists,
    *,
    bottleneck_dir: str,
    module_name: str,
    categories=CATEGORIES,
    copies: int = 0,
    copy_tag: str = "",
    tag: str = "",
) -> list[CacheEntry]:
    """The entries for the listed images of the given categories, in retrain.py's order.

    Args:
      module_name: the module's name in cache file names (FeatureExtractor.cache_name).
      copies: > 0 gives each image that many entries instead, one per distorted copy.
      tag: entries made with other pixels (e.g. fast JPEG decoding), named apart.
    """
    found = []
    for label_index, (label, sets) in enumerate(lists.items()):
        for category in categories:
            for file_name in sets[category]:
                image_path = lists.image_path(label, file_name)
                relative_path = lists.relative_path(label, file_name)
                plain = layout.bottleneck_path(bottleneck_dir, sets["dir"], file_name, module_name, tag)
                if not copies:
                    found.append(CacheEntry(label_index, category, image_path, relative_path, plain))
                for k in range(copies):
                    cache_path = layout.copy_path(plain, copy_tag, k)
                    found.append(CacheEntry(label_index, category, image_path, relative_path, cache_path, k))
    return found


def entry_groups(
    lists: ImageLists, *, bottleneck_dir: str, module_name: str, tag: str, training: TrainingImages
) -> list[list[CacheEntry]]:
    """Every entry a run with these training images calls for, in the groups it fills them.

    One group with every set when training images have their plain bottlenecks; else
    the held-out images first, then (when cached) the training images' copies.
    """
    common = dict(bottleneck_dir=bottleneck_dir, module_name=module_name)
    if training == PLAIN:
        return [entries(lists, **common, tag=tag)]
    groups = [entries(lists, **common, categories=HELD_OUT, tag=tag)]
    if training.cached:
        groups.append(entries(lists, **common, categories=("training",), copies=training.copies,
                              copy_tag=training.copy_tag))
    return groups
