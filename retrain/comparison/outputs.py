"""What retrain-compare writes: the table, OUT/comparison.json and OUT/index.html.

comparison.json (one record per module under "modules", in the order given):
  module, folder, error, validation_accuracy, validation_count, test_accuracy,
  test_count, expected_calibration_error (on "ece_images": testing, else validation),
  calibrated, feature_size, input_size [height, width], graph_bytes, latency_ms (batch
  1, median), latency_spread_ms [10th, 90th percentile], images_per_second (the graph at
  batch_size), batch_size, extraction_images_per_second (null when the cache held every
  bottleneck), bottlenecks_computed, bottlenecks_reused, rank (1 = recommended; null
  when it failed), pareto (on the accuracy-latency front).
  At the top: recommended, reason, seed, image_dir, split. Accuracies and errors are in [0, 1].

index.html: the table and a plot of validation accuracy against latency, the Pareto
front joined; its picture beside it (accuracy_latency.png). Needs the report extra
(matplotlib, jinja2); without it the page is left out with one warning.
"""

import json

from absl import logging

from retrain.comparison.runs import Comparison, ModuleResult, percent
from retrain.data import storage
from retrain.errors import UserError

JSON_NAME = "comparison.json"
PAGE_NAME = "index.html"
PLOT_NAME = "accuracy_latency.png"
_NAME_WIDTH = 44


def record(comparison: Comparison) -> dict:
    """comparison.json's content (see the module docstring)."""
    modules = comparison.modules
    ranks = {index: rank + 1 for rank, index in enumerate(comparison.ranking)}
    return {
        "image_dir": comparison.image_dir,
        "seed": comparison.seed,
        "split": comparison.split,
        "recommended": modules[comparison.recommended].module if comparison.recommended is not None else None,
        "reason": comparison.reason,
        "modules": [_module_record(result, ranks.get(i), i in comparison.pareto) for i, result in enumerate(modules)],
    }


def _module_record(result: ModuleResult, rank: int | None, pareto: bool) -> dict:
    speed = result.speed
    return {
        "module": result.module,
        "folder": result.folder,
        "error": result.error,
        "rank": rank,
        "pareto": pareto,
        "validation_accuracy": result.validation_accuracy,
        "validation_count": result.validation_count,
        "test_accuracy": result.test_accuracy,
        "test_count": result.test_count,
        "expected_calibration_error": result.expected_calibration_error,
        "ece_images": result.held_out_set,
        "calibrated": result.calibrated,
        "feature_size": result.feature_size,
        "input_size": list(result.input_size) if result.input_size else None,
        "graph_bytes": result.graph_bytes,
        "latency_ms": speed.latency_ms if speed else None,
        "latency_spread_ms": list(speed.latency_spread_ms) if speed else None,
        "images_per_second": speed.images_per_second if speed else None,
        "batch_size": speed.batch_size if speed else None,
        "extraction_images_per_second": result.extraction_images_per_second,
        "bottlenecks_computed": result.bottlenecks_computed,
        "bottlenecks_reused": result.bottlenecks_reused,
    }


def write_json(comparison: Comparison) -> str:
    """Writes OUT/comparison.json atomically; its path."""
    path = storage.join(comparison.output_dir, JSON_NAME)
    storage.write_text(path, json.dumps(record(comparison), indent=1) + "\n")
    return path


COLUMNS = ("rank", "module", "input", "features", "validation", "test", "ECE", "graph MB", "ms/image", "images/s",
           "extract/s")


def row_order(comparison: Comparison) -> list[int]:
    """Module indices in table order: ranked best first, then those that could not be ranked."""
    return comparison.ranking + [i for i in range(len(comparison.modules)) if i not in comparison.ranking]


def table_rows(comparison: Comparison) -> list[list[str]]:
    """The table's cells, a row per module in rank order (failed modules last), as text."""
    ranks = {index: rank + 1 for rank, index in enumerate(comparison.ranking)}
    rows = []
    for index in row_order(comparison):
        r = comparison.modules[index]
        if r.error:
            rows.append(["-", short_name(r.module), f"failed: {r.error}"])
            continue
        rows.append([
            str(ranks.get(index, "-")) + ("*" if index in comparison.pareto else ""),
            short_name(r.module),
            f"{r.input_size[0]}x{r.input_size[1]}",
            str(r.feature_size),
            percent(r.validation_accuracy),
            percent(r.test_accuracy),
            "-" if r.expected_calibration_error is None else f"{r.expected_calibration_error:.3f}",
            f"{r.graph_bytes / 1e6:.2f}" if r.graph_bytes < 10e6 else f"{r.graph_bytes / 1e6:.0f}",
            f"{r.speed.latency_ms:.1f}",
            f"{r.speed.images_per_second:.0f}",
            "cached" if r.extraction_images_per_second is None else f"{r.extraction_images_per_second:.0f}",
        ])
    return rows


def table_lines(comparison: Comparison) -> list[str]:
    """The table as aligned text lines, a header first, then what is recommended and why."""
    rows = table_rows(comparison)
    full = [row for row in rows if len(row) == len(COLUMNS)]
    widths = [max(len(cells[i]) for cells in [list(COLUMNS)] + full) for i in range(len(COLUMNS))]

    def line(cells):
        if len(cells) != len(COLUMNS):
            return "  ".join([cells[0].rjust(widths[0]), cells[1].ljust(widths[1]), cells[2]])
        return "  ".join(cell.ljust(w) if i == 1 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    lines = [line(list(COLUMNS))] + [line(row) for row in rows]
    lines.append("validation, test: accuracy; ECE: expected calibration error; ms/image: the exported graph, batch 1; "
                 "images/s: batch %s; * on the Pareto front (no module both more accurate on validation and faster)."
                 % (next((r.speed.batch_size for r in comparison.modules if r.speed), "-")))
    lines.append(f"Recommended (chosen on validation accuracy, never test): {comparison.reason}")
    return lines


def short_name(handle: str) -> str:
    return handle if len(handle) <= _NAME_WIDTH else "..." + handle[-(_NAME_WIDTH - 3):]


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; style-src 'unsafe-inline'">
<title>Module comparison: {{ image_dir }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.7em; text-align: right; }
td.name, th.name { text-align: left; } tr:nth-child(even) { background: #f4f4f4; }
tr.recommended { font-weight: bold; background: #e8f4e8; } .plot { max-width: 100%; } .failed { color: #b00; }
</style></head>
<body>
<h1>Which module for {{ image_dir }}</h1>
<p id="recommendation">Recommended, on validation accuracy (never test): {{ reason }}</p>
<p>Every module was trained as <code>retrain</code> trains it, on the same split (testing
{{ split.testing_percentage }}%, validation {{ split.validation_percentage }}%) with random seed {{ seed }}.
Latency and throughput are the exported graph's on the machine that ran the comparison.</p>
<img class="plot" src="{{ plot }}" alt="Validation accuracy against latency per image">
<table id="modules"><tr>{% for c in columns %}<th{% if c == "module" %} class="name"{% endif %}>{{ c }}</th>{% endfor %}</tr>
{% for row in rows %}<tr{% if row.recommended %} class="recommended"{% endif %}>
{% if row.failed %}<td>{{ row.cells[0] }}</td><td class="name">{{ row.cells[1] }}</td>
<td class="failed" colspan="{{ columns|length - 2 }}">{{ row.cells[2] }}</td>
{% else %}{% for cell in row.cells %}<td{% if loop.index == 2 %} class="name" title="{{ row.module }}"{% endif %}>{{ cell }}</td>{% endfor %}{% endif %}
</tr>{% endfor %}
</table>
<p>* on the Pareto front: no other module is both more accurate on validation and faster.
ECE: expected calibration error of the scores on the {{ ece_images }} images. The figures are in
<a href="comparison.json">comparison.json</a>.</p>
</body></html>
"""


def write_page(comparison: Comparison) -> str:
    """Writes OUT/index.html and its plot; its path, or '' when the report extra is missing (warned)."""
    from retrain.evaluation import report

    try:
        report.check_available()
    except UserError:
        logging.warning("The comparison page (index.html) needs matplotlib and jinja2: pip install "
                        "\"retrain[report]\". The table and comparison.json are written without it.")
        return ""
    import jinja2

    plot = storage.join(comparison.output_dir, PLOT_NAME)
    storage.write_bytes(plot, _plot(comparison))
    rows = [{"cells": cells, "module": comparison.modules[i].module, "failed": bool(comparison.modules[i].error),
             "recommended": i == comparison.recommended}
            for i, cells in zip(row_order(comparison), table_rows(comparison))]
    held = {r.held_out_set for r in comparison.modules if r.held_out_set} or {"test"}
    html = jinja2.Environment(autoescape=True).from_string(_PAGE).render(
        image_dir=comparison.image_dir, reason=comparison.reason, split=comparison.split, seed=comparison.seed,
        plot=PLOT_NAME, columns=COLUMNS, rows=rows, ece_images=" / ".join(sorted(held)))
    path = storage.join(comparison.output_dir, PAGE_NAME)
    storage.write_text(path, html)
    return path


def _plot(comparison: Comparison) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from retrain.evaluation import report

    usable = comparison.ranking
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    try:
        for index in usable:
            r = comparison.modules[index]
            best = index == comparison.recommended
            axes.scatter([r.latency_ms], [r.validation_accuracy * 100], s=70 if best else 40,
                         color="#2a7d2a" if best else "#3465a4", zorder=3)
            axes.annotate(short_name(r.module)[-28:], (r.latency_ms, r.validation_accuracy * 100),
                          textcoords="offset points", xytext=(6, 4), fontsize=8)
        front = [comparison.modules[i] for i in comparison.pareto]
        if len(front) > 1:
            axes.plot([r.latency_ms for r in front], [r.validation_accuracy * 100 for r in front], "--",
                      color="#888", zorder=2, label="Pareto front")
            axes.legend(loc="lower right")
        latencies = [comparison.modules[i].latency_ms for i in usable]
        if latencies and max(latencies) > 10 * min(latencies):
            axes.set_xscale("log")
        axes.set_xlabel("latency per image, ms (exported graph, batch 1)")
        axes.set_ylabel("validation accuracy, %")
        axes.grid(alpha=0.3)
        return report.png(figure)
    finally:
        plt.close(figure)
