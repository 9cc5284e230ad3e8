"""Shortcuts: a class that something other than its content predicts (the blue room).

For each cue (image size, aspect ratio, file format, file size, mean colour) a
k-nearest-neighbour classifier (scikit-learn) predicts the label from that cue alone,
out of fold. A class is named when the cue alone tells its images from the others with
a balanced accuracy (the mean of the share of its images recognised and the share of
the others rejected; chance is 0.5) of at least MIN_BALANCED_ACCURACY: a model can then
learn the cue instead of the subject, and fail on photos taken elsewhere.
"""

import dataclasses

import numpy as np

from retrain.doctor.facts import ImageFacts

MIN_BALANCED_ACCURACY = 0.9
MIN_CLASS_IMAGES = 10
NEIGHBOURS = 5


@dataclasses.dataclass(frozen=True)
class Shortcut:
    """A class a cue alone predicts: its index, the cue's name, and the balanced accuracy in [0.5, 1]."""

    label: int
    cue: str
    accuracy: float


def cues(facts: ImageFacts) -> dict[str, np.ndarray]:
    """Each cue as float [n, d] columns."""
    widths = np.maximum(facts.widths, 1).astype(np.float64)
    heights = np.maximum(facts.heights, 1).astype(np.float64)
    formats = sorted(set(facts.formats))
    return {
        "image size": np.stack([np.log(widths), np.log(heights)], axis=1),
        "aspect ratio": np.log(widths / heights)[:, None],
        "file format": np.asarray([[f == name for name in formats] for f in facts.formats], np.float64),
        "file size": np.log(np.maximum(facts.file_bytes, 1).astype(np.float64))[:, None],
        "mean colour": facts.mean_rgb.astype(np.float64),
    }


def find(facts: ImageFacts, labels: np.ndarray, readable: np.ndarray, seed: int = 0) -> list[Shortcut]:
    """The shortcuts among readable images, strongest first."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = np.flatnonzero(readable)
    y = labels[rows]
    counts = np.bincount(y)
    present = [c for c in np.unique(y) if counts[c] >= MIN_CLASS_IMAGES]
    if len(present) < 2:
        return []
    keep = np.isin(y, present)
    rows, y = rows[keep], y[keep]
    folds = int(min(5, np.bincount(y)[present].min()))
    found = []
    for cue, values in cues(facts).items():
        x = values[rows]
        if np.allclose(x, x[0]):
            continue  # Every image alike: the cue says nothing.
        # A little noise breaks ties between identical cues (one size for all), which
        # neighbours would otherwise settle by their order in the folder.
        jitter = np.random.default_rng(seed).normal(0, 1e-6, size=x.shape)
        classifier = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=NEIGHBOURS))
        predicted = cross_val_predict(classifier, x + jitter, y,
                                      cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
        for label in present:
            mine = y == label
            recognised = float(np.mean(predicted[mine] == label))
            rejected = float(np.mean(predicted[~mine] != label))
            balanced = (recognised + rejected) / 2
            if balanced >= MIN_BALANCED_ACCURACY:
                found.append(Shortcut(int(label), cue, balanced))
    return sorted(found, key=lambda s: -s.accuracy)
