"""The 2015 Inception v3 graph of the first retrain.py (classify_image_graph_def.pb) as a module.

retrain.py of TensorFlow 1.3-1.7 and the "TensorFlow for Poets" codelab downloaded
this frozen graph (inception-2015-12-05.tgz) and fed it images themselves; given as the
module (or found in --model_dir), it is fed the same way, and its cache files keep the
name that script gave them, so an old cache is reused.
"""

import hashlib

import tensorflow as tf

from retrain.data import storage
from retrain.errors import UserError, first_line
from retrain.module import scan
from retrain.module.extractor import FeatureExtractor

# The frozen graph of the first retrain.py (inception-2015-12-05.tgz), and how it was fed.
GRAPH_FILE = "classify_image_graph_def.pb"
INPUT = "Mul:0"  # float [1, 299, 299, 3], (pixels 0-255 - 128) / 128
BOTTLENECK = "pool_3/_reshape:0"  # float [1, 2048]
SIZE = 299
# retrain.py of TensorFlow 1.3-1.7 named cache files after --architecture: keep its name.
CACHE_NAME = "inception_v3"


def load(path: str, image_size: int | None = None, *, allow_unsafe_ops: bool = False) -> FeatureExtractor:
    """The 2015 Inception v3 frozen graph (classify_image_graph_def.pb) as a feature extractor.

    Fed as the first retrain.py fed it: each image, resized to 299x299 with pixel
    values 0-255, becomes (x - 128) / 128 at the graph's ``Mul`` node; the bottleneck
    is ``pool_3/_reshape`` (2048 values). The graph takes one image per run.

    Raises:
      UserError: path is not such a graph.
    """
    if image_size and image_size != SIZE:
        raise UserError(f"--image_size={image_size} does not match the 299x299 input of {path}.")
    try:
        contents = storage.read_bytes(path)
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(contents)
    except Exception as e:  # OSError, protobuf's DecodeError.
        raise UserError(f"Cannot read the Inception graph {path}: {first_line(e)}") from e

    scan.check_graph_def(graph_def, path, allow_unsafe_ops=allow_unsafe_ops)

    def import_graph():
        tf.compat.v1.import_graph_def(graph_def, name="")

    size = SIZE
    try:
        imported = tf.compat.v1.wrap_function(import_graph, [])
        # Only what lies between the old script's feed and the bottleneck: the JPEG
        # decoding before it and the classifier after it are left out.
        one_image = imported.prune(
            imported.graph.as_graph_element(INPUT),
            imported.graph.as_graph_element(BOTTLENECK),
        )
    except (ValueError, KeyError, tf.errors.OpError) as e:
        raise UserError(
            f"{path} is not the 2015 Inception v3 graph (it needs nodes {INPUT} and "
            f"{BOTTLENECK}): {first_line(e)}"
        ) from e

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def extract(images):
        scaled = (images * 255.0 - 128.0) / 128.0  # [0, 1] -> the old script's (x - 128) / 128.
        features = tf.map_fn(
            lambda image: tf.reshape(one_image(image[tf.newaxis]), [2048]),
            scaled,
            fn_output_signature=tf.TensorSpec([None], tf.float32),
        )
        return tf.reshape(features, [-1, 2048])

    return FeatureExtractor(
        handle=path,
        height=size,
        width=size,
        feature_dim=2048,
        load=None,
        loaded=(extract, one_image),
        fingerprint=hashlib.blake2b(contents, digest_size=16).hexdigest(),
        cache_name=CACHE_NAME,
    )
