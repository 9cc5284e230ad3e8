"""Running the module on every device there is: a batch split across several GPUs.

On a machine with more than one GPU (or more than one logical device of a kind, as
tests make with logical CPUs), each batch of images is cut into one slice per device,
each slice runs on its device, and the results are joined in order (extraction), or
their gradients summed (fine-tuning, training.fine_tune). With one device nothing
changes. Device-agnostic: TensorFlow places everything itself otherwise.
"""

from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging


def parallel_devices() -> list[str]:
    """The devices to split batches across: the GPUs when there are several, else one
    kind's several logical devices (a configured test machine); [] for a single device."""
    for kind in ("GPU", "CPU"):
        devices = tf.config.list_logical_devices(kind)
        if len(devices) > 1:
            return [device.name for device in devices]
        if devices and kind == "GPU":
            return []  # One GPU: TensorFlow uses it by itself.
    return []


def split_across(extract: Callable[[tf.Tensor], tf.Tensor], devices: list[str]) -> Callable:
    """extract over float32 [batch, h, w, 3], with the batch cut into len(devices) slices.

    Returns a function giving float32 [batch, dim] numpy, the rows in input order.
    """
    if len(devices) < 2:
        return lambda batch: extract(tf.convert_to_tensor(batch)).numpy()

    def split_extract(batch):
        batch = tf.convert_to_tensor(batch)
        count = int(batch.shape[0])
        parts = min(len(devices), count)
        bounds = np.linspace(0, count, parts + 1).astype(int)
        outputs = []
        for device, start, stop in zip(devices, bounds[:-1], bounds[1:]):
            with tf.device(device):
                outputs.append(extract(batch[start:stop]))  # Dispatched at once; runs in parallel.
        return np.concatenate([output.numpy() for output in outputs])

    logging.info("Extraction splits each batch across %d devices: %s", len(devices), ", ".join(devices))
    return split_extract
