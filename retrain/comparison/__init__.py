"""retrain-compare: which module suits this image folder, measured on it.

runs trains every module as retrain does on one split and seed and ranks them on
validation accuracy; measure times each exported graph and scores its calibration;
outputs writes the table, comparison.json and the page.
"""

from retrain.comparison.runs import Comparison, ModuleResult, compare

__all__ = ["Comparison", "ModuleResult", "compare"]
