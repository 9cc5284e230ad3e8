"""Training the new layer: the modes that make training data (modes, one module each), the
one class-balanced sampler, the layer (head), the loop (trainer), and every TensorBoard
summary (summaries)."""
