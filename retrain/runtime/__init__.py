"""What running any of this needs: quiet TensorFlow (quiet), the C allocator (memory), the
progress bar (progress), a frozen graph's weights held once (graph_weights), and the TFLite
interpreter (tflite_runtime)."""
