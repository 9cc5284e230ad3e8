"""Outliers: images unlike any other, by their bottlenecks' nearest neighbours (cleanlab).

cleanlab's OutOfDistribution scores each image by the average cosine distance to its k
nearest neighbours among all images (scikit-learn's NearestNeighbors, computed in
blocks: no n x n matrix), mapped to [0, 1], low = atypical. An image from another
domain dropped into a class is far from every class, and comes first.
"""

import numpy as np

NEIGHBOURS = 10
WORKING_MEMORY_MB = 128


def scores(features: np.ndarray) -> np.ndarray:
    """float [n] in [0, 1]: how typical each image is among all (low = outlier)."""
    import sklearn
    from cleanlab.outlier import OutOfDistribution

    k = int(min(NEIGHBOURS, len(features) - 1))
    detector = OutOfDistribution(params={"k": k})
    # scikit-learn computes neighbours in blocks of up to working_memory MB (1 GB by default).
    with sklearn.config_context(working_memory=WORKING_MEMORY_MB):
        found = detector.fit_score(features=np.asarray(features, np.float32), verbose=False)
    return np.asarray(found, np.float64)


def ranked(scores_: np.ndarray, count: int) -> np.ndarray:
    """The count lowest-scoring images' indices, most atypical first."""
    return np.argsort(scores_, kind="stable")[:count]
