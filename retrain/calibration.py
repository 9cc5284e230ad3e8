"""Calibrated scores and an "unknown" answer: a temperature and a threshold that travel with the model.

softmax(logits) of a classifier trained to fit its training set is overconfident:
"99%" for almost anything, including things of no trained class. Dividing the logits
by a temperature T fitted on the validation bottlenecks (minimum negative
log-likelihood) makes the top score mean what it says; below a threshold chosen on
validation, the honest answer is "unknown".
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How to turn logits into calibrated scores, and when to answer "unknown".

    Attributes:
      temperature: calibrated scores are softmax(logits / temperature); > 0.
      unknown_threshold: a calibrated top score below it means "unknown"; None when
        no threshold was chosen.
    """

    temperature: float = 1.0
    unknown_threshold: float | None = None
