"""Likely label errors: confident learning (cleanlab) on out-of-fold probabilities.

k heads (multinomial logistic regression, scikit-learn's, which cleanlab brings) are
trained on the cached bottlenecks, each on k-1 folds, and score the fold it did not see:
every image gets probabilities from a head that never saw its label. cleanlab's
find_label_issues then flags the images whose given label those probabilities contradict
more than the estimated noise between classes allows, ranked by self-confidence (the
probability of the given label; lowest first).
"""

import dataclasses

import numpy as np

from retrain.errors import require_modules

INSTALL_HINT = 'retrain-doctor needs cleanlab: pip install "retrain[doctor]"'


def check_available() -> None:
    """Raises UserError (with the pip line) unless cleanlab (and its scikit-learn) are installed."""
    require_modules(INSTALL_HINT, "cleanlab", "sklearn")


@dataclasses.dataclass
class LabelIssues:
    """What confident learning found.

    Attributes:
      probabilities: float [n, classes] out-of-fold probabilities, every image.
      ranked: indices of the flagged images, most likely wrong first.
      estimated_errors: cleanlab's estimate of how many labels are wrong (<= len(ranked)
        as a rule): the first this many are the ones a user would most likely leave out.
      folds: k.
    """

    probabilities: np.ndarray
    ranked: np.ndarray
    estimated_errors: int
    folds: int


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, class_count: int, folds: int,
                              seed: int) -> np.ndarray:
    """float64 [n, class_count]: each image's class probabilities from a head trained on the
    other folds (stratified; features standardised on the training folds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = np.bincount(labels, minlength=class_count)
    folds = int(max(2, min(folds, smallest[smallest > 0].min())))
    probabilities = np.zeros((len(labels), class_count))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(features, labels):
        head = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
        head.fit(features[train], labels[train])
        probabilities[np.ix_(held, head.classes_)] = head.predict_proba(features[held])
    return probabilities


def find(features: np.ndarray, labels: np.ndarray, class_count: int, folds: int = 5, seed: int = 0) -> LabelIssues:
    """LabelIssues of n images: features float32 [n, dim], labels int [n] in [0, class_count)."""
    from cleanlab import count, filter

    probabilities = out_of_fold_probabilities(features, labels, class_count, folds, seed)
    present = np.unique(labels)
    # cleanlab wants every class among the labels: work on the classes present.
    local = np.searchsorted(present, labels)
    local_probabilities = probabilities[:, present]
    local_probabilities = local_probabilities / np.maximum(local_probabilities.sum(axis=1, keepdims=True), 1e-12)
    ranked = filter.find_label_issues(local, local_probabilities, return_indices_ranked_by="self_confidence",
                                      filter_by="prune_by_noise_rate")
    estimated = int(count.num_label_issues(local, local_probabilities))
    return LabelIssues(probabilities, np.asarray(ranked, np.int64), min(estimated, len(ranked)), folds)
