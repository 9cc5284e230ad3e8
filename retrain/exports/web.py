"""The web page (--output_web DIR): a static folder that classifies a photo in the browser, offline.

DIR holds ``index.html`` and ``page.js`` (choose or drop a photo: it is shown with the
top labels and their scores, and "unknown" when the calibrated top score is below the
model's threshold), ``model.onnx``, ``config.json`` (labels, the calibration, the input
size), the runtime (onnxruntime-web, see exports.onnxruntime_web) and its notice. Serve
the folder with any static server (``python -m http.server -d DIR``); nothing is loaded
from elsewhere (the page's Content-Security-Policy says so to the browser).

The page's model is the ONNX model with the preprocessing inside: it takes the decoded
pixels at their own size, uint8 [1, h, w, 3], and scales and resizes them as training
did (ONNX Resize with asymmetric coordinates is TF1's bilinear resize without half-pixel
centres), so the page only decodes. ``index.html?image=NAME`` classifies the file NAME
of the folder on load and writes ``{"predictions": [{"label", "score"}, ...], "unknown"}``
into ``<pre id="result">``, for links and tests.
"""

import importlib.resources
import json
import time

import numpy as np
from absl import logging

from retrain.data import images, storage
from retrain.errors import ImageError
from retrain.exports import onnx, onnxruntime_web, parity

TOP_K = 5
PAGE_FILES = ("index.html", "page.js")


def page_files() -> dict[str, bytes]:
    """The page itself, as shipped in the package."""
    folder = importlib.resources.files("retrain.exports") / "web_page"
    return {name: (folder / name).read_bytes() for name in PAGE_FILES}


def config(model, title: str) -> dict:
    """What page.js reads: the labels, the calibration and the input size (exports.onnx.metadata)."""
    return {**onnx.metadata(model), "title": title, "top_k": min(TOP_K, len(model.labels))}


def write(path: str, model, options) -> parity.Parity | None:
    """Writes the folder at path (replacing an earlier one only once complete) and checks its model."""
    start = time.perf_counter()
    content = onnx.convert(model, resize_inside=True)
    runtime = onnxruntime_web.runtime_files(options.web_runtime)
    title = f"{storage.basename(options.output_graph or path.rstrip('/')) or 'retrained model'}: " \
            f"{', '.join(model.labels[:6])}{', ...' if len(model.labels) > 6 else ''}"
    files = {
        **page_files(),
        "model.onnx": content,
        "config.json": json.dumps(config(model, title), indent=1, sort_keys=True).encode("utf-8"),
        **runtime,
        "THIRD_PARTY_NOTICES.txt": onnxruntime_web.notice().encode("utf-8"),
    }
    with storage.replaced_directory(path) as folder:
        for name, data in files.items():
            storage.write_bytes(storage.join(folder, name), data)
    seconds = time.perf_counter() - start
    logging.info("Web page written to %s in %.1f s (%.1f MB; serve the folder, e.g. python -m http.server -d %s).",
                 path, seconds, sum(len(data) for data in files.values()) / 1e6, path)
    return parity.finish(measure_parity(content, model), seconds, name="The web page's model", kind="web page's",
                         output_graph=options.output_graph, min_agreement=onnx.MIN_AGREEMENT,
                         advice="please report it, with the module used")


def measure_parity(content: bytes, model) -> parity.Parity | None:
    """The page's model in ONNX Runtime on held-out images at their own size (decoded, upright,
    as a browser shows them), against the trained model: the resize inside must be training's."""
    runner = onnx.session(content)
    name = runner.get_inputs()[0].name

    def batches(paths):
        for position, path in enumerate(paths):
            try:
                pixels = images.read_image(path)
            except ImageError:
                continue
            yield [position], runner.run(["scores"], {name: pixels[np.newaxis]})[0]

    return parity.measure(model, batches, "Checking the web page's model", size_bytes=len(content))
