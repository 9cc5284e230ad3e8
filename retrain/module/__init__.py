"""The feature-vector module: loading it from a handle (hub), the object every stage holds
(extractor), the 2015 Inception graph (inception_2015), freezing it once (frozen), and
running it across devices (devices)."""
