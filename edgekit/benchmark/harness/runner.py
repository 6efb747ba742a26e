"""A model loaded into LiteRT's interpreter, its inputs, and the timing of one invoke."""

from __future__ import annotations

import sys
import time

from . import protocol


def interpreter_module():
    try:
        from ai_edge_litert import interpreter
    except ImportError as e:
        raise protocol.ChildError(
            "missing_runtime",
            f"ai-edge-litert cannot be imported with {sys.executable} ({e}). Install it on "
            "this machine with `pip install ai-edge-litert` (and numpy).",
        ) from None
    return interpreter


def make_interpreter(content: bytes, num_threads: int | None, use_xnnpack: bool):
    mod = interpreter_module()
    kwargs = {"model_content": content}
    if num_threads is not None:
        kwargs["num_threads"] = num_threads
    if not use_xnnpack:
        kwargs["experimental_op_resolver_type"] = (
            mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
    try:
        interp = mod.Interpreter(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise protocol.ChildError(
            "user", f"The interpreter could not load the model: {e}"
        ) from None
    return interp


class Runner:
    """One loaded model: its input tensors, and an `invoke` to time."""

    def __init__(self, interp, signature: str | None) -> None:
        self.interp = interp
        self.subgraph = 0
        if signature:
            sigs = interp.get_signature_list()
            if signature not in sigs:
                raise protocol.ChildError(
                    "user",
                    f"The model has no signature {signature!r}; its signatures are "
                    f"{sorted(sigs)}. Pass one of them, or leave the signature unset.",
                )
            runner = interp.get_signature_runner(signature)
            self.subgraph = runner._subgraph_index
            details = list(runner.get_input_details().values())
            wrapper = interp._interpreter
            sub = self.subgraph
            self._set = lambda index, value: wrapper.SetTensor(index, value, sub)
            self.invoke = lambda: wrapper.Invoke(sub)
        else:
            details = interp.get_input_details()
            self._set = interp.set_tensor
            self.invoke = interp.invoke
        self.inputs = [_spec(d) for d in details]

    def set_inputs(self, feeds: list) -> None:
        for spec, value in zip(self.inputs, feeds):  # noqa: B905 (Python 3.8+)
            self._set(spec["index"], value)


def _spec(d: dict) -> dict:
    import numpy as np

    qp = d.get("quantization_parameters") or {}
    scales = list(qp.get("scales", []))
    scale, zp = d.get("quantization", (0.0, 0))
    quantized = bool(len(scales)) and float(scale) != 0.0
    return {
        "name": str(d["name"]),
        "index": int(d["index"]),
        "shape": [int(x) for x in d["shape"]],
        "shape_signature": [int(x) for x in d.get("shape_signature", d["shape"])],
        "dtype": np.dtype(d["dtype"]).name,
        "scale": float(scale) if quantized else None,
        "zero_point": int(zp) if quantized else None,
    }


def timed(invoke) -> float:
    pc = time.perf_counter_ns
    t0 = pc()
    invoke()
    return (pc() - t0) / 1000.0
