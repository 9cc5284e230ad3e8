"""The older command lines: --architecture and --model_dir of TensorFlow's retrain.py (1.3-1.7).

The TensorFlow-repo retrain.py and the "TensorFlow for Poets" codelab chose a network
with --architecture and downloaded its frozen graph into --model_dir. Their command
lines run unchanged: each flag maps to today's equivalent, and says so in one line.

- ``--architecture inception_v3``: the default module.
- ``--architecture mobilenet_<1.0|0.75|0.50|0.25>_<224|192|160|128>[_quantized]``: the
  matching TF-Hub MobileNet V1 feature-vector module, at its image size. The
  quantized variant is the same module: quantization now happens at export
  (--output_tflite with --tflite_quantization int8).
- ``--model_dir DIR``: where downloaded modules are kept (TFHUB_CACHE_DIR); if DIR holds
  the 2015 Inception graph the old script downloaded (classify_image_graph_def.pb)
  and Inception is asked for, that graph is the module, fed as the old script fed it.

Pure Python: no TensorFlow.
"""

import dataclasses
import os
import re

from retrain import config

_MOBILENET = re.compile(r"^mobilenet_(1\.0|0\.75|0\.50|0\.25)_(224|192|160|128)(_quantized)?$")
_MULTIPLIERS = {"1.0": "100", "0.75": "075", "0.50": "050", "0.25": "025"}

ARCHITECTURES_HELP = "inception_v3, or mobilenet_<1.0|0.75|0.50|0.25>_<224|192|160|128>[_quantized]"


@dataclasses.dataclass(frozen=True)
class LegacyChoice:
    """What the old flags mean now.

    Attributes:
      tfhub_module: the module to load (a handle, or the path of the 2015 graph).
      image_size: the input size the architecture implies, or None.
      tfhub_cache_dir: where downloaded modules are kept, or ''.
      messages: one line per old flag, saying what it maps to.
    """

    tfhub_module: str
    image_size: int | None
    tfhub_cache_dir: str
    messages: tuple[str, ...]


def mobilenet_handle(architecture: str) -> tuple[str, int, bool] | None:
    """(TF-Hub handle, image size, quantized) for a mobilenet_* architecture, else None."""
    match = _MOBILENET.match(architecture.lower())
    if not match:
        return None
    multiplier, size, quantized = match.groups()
    handle = f"https://tfhub.dev/google/imagenet/mobilenet_v1_{_MULTIPLIERS[multiplier]}_{size}/feature_vector/5"
    return handle, int(size), bool(quantized)


def resolve(architecture: str | None, model_dir: str | None, tfhub_module: str | None) -> LegacyChoice:
    """Maps --architecture and --model_dir (None: not given) to today's settings.

    Args:
      tfhub_module: the --tfhub_module given explicitly, or None.

    Raises:
      ValueError: an architecture no retrain.py knew, or one given beside --tfhub_module.
    """
    messages = []
    module = tfhub_module or config.DEFAULT_TFHUB_MODULE
    image_size = None
    wants_inception = True
    if architecture is not None:
        if tfhub_module is not None:
            raise ValueError("--architecture and --tfhub_module both name the module; keep one of them")
        name = architecture.lower()
        mobilenet = mobilenet_handle(name)
        if mobilenet is not None:
            module, image_size, quantized = mobilenet
            wants_inception = False
            note = (
                "; quantization now happens at export: add --output_tflite model.tflite --tflite_quantization int8"
                if quantized
                else ""
            )
            messages.append(f"--architecture {architecture} means --tfhub_module {module} (image size {image_size}){note}.")
        elif name == "inception_v3":
            messages.append(f"--architecture {architecture} means the default module, --tfhub_module {module}.")
        else:
            raise ValueError(f"--architecture {architecture} is not one retrain.py knew: use {ARCHITECTURES_HELP}")
    cache_dir = ""
    if model_dir is not None:
        graph = os.path.join(model_dir, "classify_image_graph_def.pb")
        if wants_inception and tfhub_module is None and os.path.isfile(graph):
            module = graph
            messages.append(
                f"--model_dir {model_dir} holds the 2015 Inception v3 graph: it is the module "
                f"(bottleneck pool_3/_reshape, 2048 values), as in the old retrain.py."
            )
        else:
            cache_dir = model_dir
            messages.append(f"--model_dir {model_dir} is where downloaded modules are kept (as TFHUB_CACHE_DIR).")
    return LegacyChoice(module, image_size, cache_dir, tuple(messages))
