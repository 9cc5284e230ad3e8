"""Measuring a model: accuracy figures (metrics), calibration and the unknown threshold
(calibration), the trained model on held-out images (held_out), the HTML report (report)."""
