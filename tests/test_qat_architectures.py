"""The architectures plain TF-MOT refuses to quantize, and where their QAT is held.

Plain TF-MOT's `quantize_model` refuses MobileNetV3Small and EfficientNetB0 (tested
here, cheaply). edgekit's QAT on them, through to an int8 file that agrees (cosine >=
0.98 with the QAT model), is measured by benchmarks/qat_architectures.py (which also
covers MobileNet, MobileNetV2, MobileNetV3Large, ResNet50 and DenseNet121) and held in
CI by tests/test_keras3_architectures.py; see the note at the end of this file.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from edgekit import _compat

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "qat_architectures.py"
_spec = importlib.util.spec_from_file_location("qat_architectures", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV3Small", "EfficientNetB0"])
def test_plain_tfmot_refuses(name):
    tfmot = _compat.tfmot()
    with pytest.raises((RuntimeError, AttributeError, ValueError)):
        tfmot.quantization.keras.quantize_model(bench.build(name, weights="random"))


# QAT on these nets through to an int8 file that agrees (every layer quantized, ranges
# from QAT, cosine >= 0.98) is held in CI by tests/test_keras3_architectures.py: the
# Keras 3 MobileNetV3Small and EfficientNetB0 go through the same tf_keras QAT rewrite
# after the bridge, sparsity-preserving, with the zeros kept too. The tf_keras runs (2 to
# 3 minutes each) left CI to keep it under its 40 minutes; `benchmarks/qat_architectures.py`
# (`--variants=qat,prune_qat`) still measures them, and tests/test_qat.py keeps plain
# QAT's swish rewrite on a small model.
