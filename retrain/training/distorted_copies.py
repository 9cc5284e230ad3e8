"""Mode "distorted_copies" (--distorted_copies K): K distorted copies of each training image,
computed once, cached beside the bottlenecks and drawn like cached bottlenecks."""

from absl import logging

from retrain.cache import plan
from retrain.config import RetrainConfig
from retrain.data import batching, distortions, images
from retrain.training.modes import ModeContext, TrainingData


def training_images(config: RetrainConfig) -> plan.TrainingImages:
    """K copies per image, named after the distortion settings so other settings never reuse them."""
    return plan.TrainingImages(copies=config.distortions.distorted_copies,
                               copy_tag=distortions.settings_tag(config.distortions))


def training_data(context: ModeContext) -> TrainingData:
    """Validation and test undistorted from the cache, then the training images' copies."""
    config = context.config
    held_out, copies = context.entry_groups(training_images(config))
    data = TrainingData.held_out_from(context.fill_from_files(held_out))
    logging.info("Using %d cached distorted copies of each training image.", config.distortions.distorted_copies)
    distorter = distortions.Distorter(config.distortions, context.extractor.height, context.extractor.width)

    def distorted_copy(entry: plan.CacheEntry):
        seed = distortions.copy_seed(entry.relative_path, entry.copy_index)
        return distorter(images.read_image(entry.image_path), seed)

    found = context.fill(copies, batching.threaded_decoder(distorted_copy, config.bottleneck_batch_size))
    data.add(found)
    data.examples = found.sets["training"]
    return data
