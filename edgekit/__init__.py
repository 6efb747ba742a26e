"""edgekit: a Keras model to a small, fast, verified .tflite file, with measurements."""

__version__ = "0.1.0"
