"""QAT on the architectures plain TF-MOT refuses, through to an int8 file that agrees.

The run itself lives in benchmarks/qat_architectures.py (which also covers
MobileNet, MobileNetV2, MobileNetV3Large, ResNet50 and DenseNet121, and random
weights); these tests hold it to the issue's bar, cosine >= 0.98 between the int8
file and the QAT Keras model on 32 random inputs, starting from weights trained for
three epochs on the bundled digits (random weights amplify a one-pixel change past
that bar; the benchmark's docstring has the numbers). Each takes one to three
minutes on 2 CPU cores.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import pytest

from edgekit import _compat

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "qat_architectures.py"
_spec = importlib.util.spec_from_file_location("qat_architectures", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@functools.cache
def _trained(name):
    # run_one never changes the model it is given, so the tests share one.
    return bench.build(name, weights="digits")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV3Small", "EfficientNetB0"])
def test_plain_tfmot_refuses(name):
    tfmot = _compat.tfmot()
    with pytest.raises((RuntimeError, AttributeError, ValueError)):
        tfmot.quantization.keras.quantize_model(bench.build(name, weights="random"))


# EfficientNetB0's QAT (its squeeze-excite multiplies and swish activations through the
# same rewrite) is held to these bars in tests/test_keras3_architectures.py, with the
# zeros kept too; running it here as well would cost CI 3 more minutes and test no more
# code (`benchmarks/qat_architectures.py --models=EfficientNetB0` still measures it).
@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV3Small"])
def test_qat_converts_to_int8_that_agrees(name):
    row = bench.run_one(name, steps=2, model=_trained(name))
    assert row["float_digits_accuracy"] >= 0.5, row  # the weights did learn something
    assert row["quantized"] > 100 and row["float"] == 0, row
    assert row["ranges"].startswith("from quantization-aware training"), row
    assert row["cos"] >= 0.98, row


# Prune -> sparsity-preserving QAT -> int8 on MobileNetV3Small is held to the same bars in
# tests/test_keras3_architectures.py: a Keras 3 net goes through the same tf_keras QAT
# after the bridge, so running the tf_keras one here too (3 min) would test nothing more
# (`benchmarks/qat_architectures.py --variants=prune_qat` still measures it).
