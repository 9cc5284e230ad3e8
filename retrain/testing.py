"""Builders of tiny TF-Hub modules and synthetic image folders.

Used by the tests, the README demo and the benchmark, so that all of them run offline:
nothing here touches the network.
"""

import os

import numpy as np
from PIL import Image, ImageDraw

# Distinct colours, one per synthetic class, in class order.
PALETTE = (
    (220, 40, 40),
    (40, 170, 60),
    (50, 80, 220),
    (230, 200, 40),
    (160, 60, 200),
    (40, 200, 210),
)


def build_tiny_module(
    path: str, image_size: int = 24, feature_dim: int = 32, seed: int = 0, fixed_size: bool = True,
    classes: int | None = None,
) -> str:
    """Saves a tiny TF2 feature-vector SavedModel in TF-Hub format at path.

    The module maps float32 [batch, image_size, image_size, 3] in [0, 1] to float32
    [batch, feature_dim]: the mean colour of each cell of a 3x3 grid, mixed by a fixed
    random matrix held in a variable (so exporting has a variable to freeze). Colour
    survives, so colour-coded classes are learnable. With fixed_size=False the
    signature accepts any height and width (like modules that need --image_size). With
    classes (1001, say), it is a classification module instead: its features go through a
    fixed random layer to that many logits, which it returns.

    Returns:
      path, for convenience.
    """
    import tensorflow as tf

    size = image_size if fixed_size else None

    class TinyFeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(seed)
            mixing = rng.normal(size=(27, feature_dim)) / np.sqrt(27.0)
            self.mixing = tf.Variable(mixing.astype(np.float32), name="mixing")
            if classes:
                logits = rng.normal(size=(feature_dim, classes)) * 3.0 / np.sqrt(feature_dim)
                self.classifier = tf.Variable(logits.astype(np.float32), name="classifier")

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        def __call__(self, images):
            if fixed_size:
                cell = image_size // 3
                pooled = tf.nn.avg_pool2d(images, cell, cell, "VALID")[:, :3, :3, :]
            else:
                pooled = tf.image.resize(images, [3, 3], method="area")
            features = tf.tanh(tf.matmul(tf.reshape(pooled, [-1, 27]) * 2.0 - 1.0, self.mixing))
            return tf.matmul(features, self.classifier) if classes else features

    tf.saved_model.save(TinyFeatureVector(), path)
    return path


def build_tunable_module(
    path: str, image_size: int = 24, feature_dim: int = 16, seed: int = 0, seen_channels=(True, True, True)
) -> str:
    """Saves a tiny module that can be fine-tuned: TF-Hub's reusable SavedModel API.

    float32 [batch, image_size, image_size, 3] in [0, 1] -> float32 [batch, feature_dim]:
    a 3x3 convolution to 8 channels, batch normalisation (batch statistics and moving
    averages with training=True, moving averages with training=False), ReLU, the mean
    over the image, and a dense layer. It lists variables and trainable_variables and
    takes training=, as TF-Hub's fine-tunable modules do.

    seen_channels: the input channels (R, G, B) the convolution starts out looking at;
    the others have zero weights, so frozen features cannot tell images apart by them,
    while training can learn to.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(3, 3, 3, 8)).astype(np.float32) * 0.5
    kernel[:, :, [not seen for seen in seen_channels], :] = 0.0
    kernel = tf.Variable(kernel, name="conv/kernel")
    gamma = tf.Variable(np.ones(8, np.float32), name="batch_norm/gamma")
    beta = tf.Variable(np.full(8, 0.1, np.float32), name="batch_norm/beta")
    moving_mean = tf.Variable(np.zeros(8, np.float32), trainable=False, name="batch_norm/moving_mean")
    moving_variance = tf.Variable(np.ones(8, np.float32), trainable=False, name="batch_norm/moving_variance")
    dense = tf.Variable((rng.normal(size=(8, feature_dim)) / np.sqrt(8.0)).astype(np.float32), name="dense/kernel")

    def call(images, training):
        x = tf.nn.conv2d(images * 2.0 - 1.0, kernel, 1, "SAME")
        if training:
            mean, variance = tf.nn.moments(x, [0, 1, 2])
            moving_mean.assign(0.99 * moving_mean + 0.01 * mean)
            moving_variance.assign(0.99 * moving_variance + 0.01 * variance)
        else:
            mean, variance = moving_mean, moving_variance
        x = tf.nn.relu(tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-3))
        return tf.matmul(tf.reduce_mean(x, [1, 2]), dense)

    module = tf.train.Checkpoint()
    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)
    function = tf.function(lambda images, training=False: call(images, training))
    for training in (False, True):
        function.get_concrete_function(spec, training)
    module.__call__ = function
    module.variables = [kernel, gamma, beta, moving_mean, moving_variance, dense]
    module.trainable_variables = [kernel, gamma, beta, dense]
    module.regularization_losses = []
    tf.saved_model.save(module, path)
    return path


def build_tiny_tf1_module(path: str, image_size: int = 24, feature_dim: int = 32, seed: int = 0) -> str:
    """Saves a tiny module in the TF1 Hub format (as retrain.py's default module was).

    A TF1 SavedModel with the empty tag set and an ``image_feature_vector`` signature
    (input ``images``, output ``default``), plus the ``tfhub_module.pb`` marker file by
    which tensorflow_hub recognises the format. Same mapping as build_tiny_module.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, [None, image_size, image_size, 3], name="images")
        mixing = np.random.default_rng(seed).normal(size=(27, feature_dim)) / np.sqrt(27.0)
        weights = v1.get_variable("mixing", initializer=mixing.astype(np.float32), use_resource=True)
        cell = image_size // 3
        pooled = tf.nn.avg_pool2d(images, cell, cell, "VALID")[:, :3, :3, :]
        features = tf.tanh(tf.matmul(tf.reshape(pooled, [-1, 27]) * 2.0 - 1.0, weights))
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(path)
            signature = v1.saved_model.predict_signature_def(inputs={"images": images}, outputs={"default": features})
            builder.add_meta_graph_and_variables(session, tags=[], signature_def_map={"image_feature_vector": signature})
            builder.save()
    with open(os.path.join(path, "tfhub_module.pb"), "wb"):
        pass  # Its presence marks the TF1 Hub format; the loader does not read it.
    return path


def build_legacy_inception_graph(path: str, seed: int = 0) -> str:
    """Writes a tiny stand-in for the 2015 Inception v3 graph, classify_image_graph_def.pb.

    The node names and shapes the first retrain.py used: ``DecodeJpeg/contents``
    (JPEG bytes) -> ... -> ``Mul`` (float [1, 299, 299, 3], (pixels - 128) / 128) ->
    ``pool_3/_reshape`` (float [1, 2048]) -> ``softmax``. In between, cheap pooling
    and a fixed 1x1 convolution instead of Inception's layers, so colours stay
    learnable.

    Returns:
      path.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        contents = v1.placeholder(tf.string, [], name="DecodeJpeg/contents")
        decoded = tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg")
        expanded = tf.expand_dims(tf.cast(decoded, tf.float32, name="Cast"), 0, name="ExpandDims")
        resized = tf.raw_ops.ResizeBilinear(images=expanded, size=[299, 299], name="ResizeBilinear")
        normalized = tf.multiply(tf.subtract(resized, 128.0, name="Sub"), 1.0 / 128.0, name="Mul")
        normalized.set_shape([1, 299, 299, 3])
        pooled = tf.nn.avg_pool2d(normalized, 33, 33, "VALID", name="cells")  # [1, 9, 9, 3]
        filters = tf.constant(rng.normal(size=(1, 1, 3, 2048)).astype(np.float32), name="mixed/filters")
        mixed = tf.nn.relu(tf.nn.conv2d(pooled, filters, 1, "VALID"), name="mixed")
        pool_3 = tf.nn.avg_pool2d(mixed, 9, 9, "VALID", name="pool_3")  # [1, 1, 1, 2048]
        bottleneck = tf.reshape(pool_3, [1, 2048], name="pool_3/_reshape")
        # The real graph has 1008 ImageNet classes here; the bottleneck is what matters.
        weights = tf.constant(rng.normal(size=(2048, 16)).astype(np.float32) * 0.01, name="softmax/weights")
        tf.nn.softmax(tf.matmul(bottleneck, weights), name="softmax")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())
    return path


def build_inception_v3_module(path: str, seed: int = 0) -> str:
    """Saves Inception v3 with random weights as a TF-Hub-format feature-vector SavedModel.

    Same architecture and compute as tfhub.dev's inception_v3/feature_vector: float32
    [batch, 299, 299, 3] in [0, 1] -> [batch, 2048]. For benchmarks, not accuracy.
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    network = tf.keras.applications.InceptionV3(
        weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3)
    )

    class InceptionFeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
        def __call__(self, images):
            # Keras' Inception expects [-1, 1]; TF-Hub modules take [0, 1].
            return self.network(images * 2.0 - 1.0, training=False)

    tf.saved_model.save(InceptionFeatureVector(), path)
    return path


def build_keras_module(path: str, application: str = "EfficientNetB0", size: int = 224, seed: int = 0,
                       reusable: bool = False) -> str:
    """Saves a Keras application with random weights as a TF-Hub-format feature-vector module.

    EfficientNetB0 has the compute of EfficientNet-Lite0 (about 0.4 GFLOPs per image):
    the cheap modules for which decoding, not the module, sets the pace.
    float32 [batch, size, size, 3] in [0, 1] -> [batch, features]. With reusable, it has
    TF-Hub's reusable SavedModel API (training=, trainable_variables), so it can be
    fine-tuned, as TF-Hub's TF2 feature vectors can.
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    network = getattr(tf.keras.applications, application)(
        weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3)
    )
    if reusable:
        module = tf.train.Checkpoint(network=network)
        spec = tf.TensorSpec([None, size, size, 3], tf.float32)
        # Keras' EfficientNet rescales 0-255 itself.
        function = tf.function(lambda images, training=False: network(images * 255.0, training=training))
        for training in (False, True):
            function.get_concrete_function(spec, training)
        module.__call__ = function
        module.variables = [variable.value for variable in network.variables]
        module.trainable_variables = [variable.value for variable in network.trainable_variables]
        module.regularization_losses = []
        tf.saved_model.save(module, path)
        return path

    class KerasFeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        def __call__(self, images):
            return self.network(images * 255.0, training=False)  # Keras' EfficientNet rescales 0-255 itself.

    tf.saved_model.save(KerasFeatureVector(), path)
    return path


def build_near_free_module(path: str, size: int = 224, feature_dim: int = 1280, seed: int = 0) -> str:
    """Saves a module of one small layer (an 8x8 grid of pixels times a 192 x feature_dim matrix).

    It reads 192 of each image's values, so extraction with it measures everything but
    the module: reading, decoding, resizing and writing the cache. (Pooling every pixel
    instead cost 0.2 ms an image here, 3% of decoding one.)
    """
    import tensorflow as tf

    mixing = np.random.default_rng(seed).normal(size=(192, feature_dim)).astype(np.float32) / 14.0

    class NearFreeFeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            self.mixing = tf.Variable(mixing)

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        def __call__(self, images):
            step = size // 8
            grid = images[:, step // 2 :: step, step // 2 :: step, :][:, :8, :8, :]
            return tf.tanh(tf.matmul(tf.reshape(grid, [-1, 192]), self.mixing))

    tf.saved_model.save(NearFreeFeatureVector(), path)
    return path


def make_phone_photos(root: str, class_names=("a", "b"), per_class: int = 8, seed: int = 0,
                      size=(4000, 3000)) -> str:
    """Writes JPEGs like a phone camera's: 12 megapixels (4000x3000), about 4.5 MB each.

    Smooth colour fields with sensor-like grain, so that JPEG entropy decoding costs
    what a real photo's does (a flat image would decode far faster).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    for name in class_names:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            low = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
            smooth = np.asarray(Image.fromarray(low).resize((width, height), Image.BICUBIC)).astype(np.int16)
            smooth += rng.integers(-12, 13, size=(height, width), dtype=np.int16)[..., np.newaxis]
            image = Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8))
            image.save(os.path.join(root, name, f"{name}_{i:03d}.jpg"), "JPEG", quality=92)
    return root


def make_image_folder(
    root: str,
    class_names=("red", "green", "blue"),
    images_per_class: int = 20,
    seed: int = 0,
    min_size: int = 24,
    max_size: int = 64,
    shuffle_labels: bool = False,
    file_format: str = "JPEG",
    colours=None,
) -> str:
    """Writes a folder of synthetic images, one sub-folder per class.

    Each image is a filled shape in its class's colour (PALETTE in class order, or
    colours, one RGB per class) on a noisy grey background, of random size and aspect.
    With shuffle_labels, the colour of each image is random, so the folder name says
    nothing about the image: a classifier can only guess.

    Returns:
      root.
    """
    rng = np.random.default_rng(seed)
    extension = {"JPEG": "jpg", "PNG": "png"}[file_format]
    for class_index, name in enumerate(class_names):
        class_dir = os.path.join(root, name)
        os.makedirs(class_dir, exist_ok=True)
        for i in range(images_per_class):
            colour_index = rng.integers(len(class_names)) if shuffle_labels else class_index
            palette = colours or PALETTE
            image = synthetic_image(rng, palette[colour_index % len(palette)], min_size, max_size)
            image.save(os.path.join(class_dir, f"{name}_{i:03d}.{extension}"), file_format)
    return root


def synthetic_image(rng: np.random.Generator, colour, min_size: int = 24, max_size: int = 64):
    """One RGB Pillow image: a shape of the given colour on a noisy background."""
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    noise = rng.normal(128, 30, size=(height, width, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(noise, "RGB")
    draw = ImageDraw.Draw(image)
    box = (width * 0.15, height * 0.15, width * 0.85, height * 0.85)
    if rng.integers(2):
        draw.ellipse(box, fill=tuple(colour))
    else:
        draw.rectangle(box, fill=tuple(colour))
    return image
