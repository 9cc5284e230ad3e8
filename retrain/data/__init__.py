"""From files to module inputs: storage, image lists and the split, decoding, preprocessing,
batching, distortions. Knows nothing of modules, caches or training."""
