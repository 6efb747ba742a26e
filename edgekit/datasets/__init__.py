"""The bundled example: real data that ships with edgekit, and a model to compress.

The data is the UCI "Optical Recognition of Handwritten Digits" test set (the copy
scikit-learn also ships): 1,797 grey 8x8 images of the digits 0-9, pixel values
0-16, by E. Alpaydin and C. Kaynak, licensed CC BY 4.0. edgekit stores it with a
fixed, stratified 80/20 split (1,438 train / 359 test) in `digits.npz`, so every
run and every figure in the docs uses the same test set. Nothing is downloaded.

Example:
    >>> (x_train, y_train), (x_test, y_test) = edgekit.datasets.load_digits()
    >>> model = edgekit.datasets.build_example_model()
"""

from edgekit.datasets.digits import load_digits
from edgekit.datasets.models import (
    EXAMPLE_TRAINING,
    build_example_model,
    example_model,
    train_example_model,
)

__all__ = [
    "EXAMPLE_TRAINING",
    "build_example_model",
    "example_model",
    "load_digits",
    "train_example_model",
]
