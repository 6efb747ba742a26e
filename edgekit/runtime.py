"""Run a `.tflite` model from Python: the interpreter wrapper.

Imports with numpy and ai-edge-litert alone (what an edge device has). It hides
the chores that make hand-written interpreter loops wrong: quantizing float inputs
with each tensor's scale and zero point, dequantizing outputs, feeding any batch
size to a model converted with batch 1 or a dynamic batch, and choosing threads
and XNNPack.

Example:
    >>> lm = LiteModel("model.tflite", num_threads=2)
    >>> probs = lm.predict(x_test)          # float32, whatever the model's I/O dtype
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgekit import _compat, errors
from edgekit.lite import sandbox, tensor_spec
from edgekit.lite import validate as lite_validate  # `validate` is LiteModel's argument

_INT_RANGES = {
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int16): (-32768, 32767),
    np.dtype(np.int32): (-(2**31), 2**31 - 1),
}


# Defined below this layer (`lite/` describes and reads files; it never runs them),
# re-exported here where users found them first.
TensorSpec = tensor_spec.TensorSpec
read_model_bytes = lite_validate.read_model_bytes


class LiteModel:
    """A `.tflite` model ready to run, with quantization handled for the caller.

    Args:
      model: path to a `.tflite` file, or its bytes.
      num_threads: interpreter threads; None lets the runtime choose.
      use_xnnpack: apply the XNNPack delegate (the default CPU path); False runs the
        builtin reference/optimized kernels only.
      validate: run edgekit's structural checks on the bytes before the interpreter
        sees them (for files from outside).
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        num_threads: int | None = None,
        use_xnnpack: bool = True,
        validate: bool = True,
    ) -> None:
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise errors.UserInputError(
                "num_threads must be a whole number >= 1 (or None for the runtime default). "
                + errors.received(num_threads=num_threads)
            )
        self.model_bytes = read_model_bytes(model)
        if validate:
            lite_validate.check_model_bytes(self.model_bytes)
        self.num_threads = num_threads
        self.use_xnnpack = use_xnnpack
        interp_mod = _compat.litert_interpreter()
        kwargs: dict[str, Any] = {"model_content": self.model_bytes}
        if num_threads is not None:
            kwargs["num_threads"] = num_threads
        if not use_xnnpack:
            kwargs["experimental_op_resolver_type"] = (
                interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        try:
            with _compat.quiet_litert():  # no "INFO: Created ... XNNPACK delegate" line
                self.interpreter = interp_mod.Interpreter(**kwargs)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise errors.UserInputError(
                f"The interpreter could not load this model: {e}. If the model needs Select TF "
                "ops (Flex) or custom ops, the runtime must be built with them. "
                + errors.received(model_size_bytes=len(self.model_bytes))
            ) from None
        self._batch = None
        self._refresh_specs()

    def _refresh_specs(self) -> None:
        self.inputs = [TensorSpec.from_details(d) for d in self.interpreter.get_input_details()]
        self.outputs = [TensorSpec.from_details(d) for d in self.interpreter.get_output_details()]

    @property
    def dynamic_batch(self) -> bool:
        return all(s.dynamic_batch for s in self.inputs)

    def io_spec(self) -> dict[str, list[dict[str, Any]]]:
        """Inputs and outputs with shapes, dtypes and quantization, JSON-ready."""
        return {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    # -- conversions ---------------------------------------------------------

    @staticmethod
    def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
        """Maps float values to the input tensor's dtype with its scale and zero point."""
        dtype = np.dtype(spec.dtype)
        x = np.asarray(x)
        if x.dtype == dtype:
            return x
        if spec.quantized and dtype.kind in "iu" and x.dtype.kind == "f":
            lo, hi = _INT_RANGES[dtype]
            q = np.round(x / spec.scale + spec.zero_point)
            return np.clip(q, lo, hi).astype(dtype)
        return x.astype(dtype)

    @staticmethod
    def dequantize(y: np.ndarray, spec: TensorSpec) -> np.ndarray:
        """Maps an output tensor's values back to float32."""
        if spec.quantized and y.dtype.kind in "iu":
            return ((y.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)
        return y.astype(np.float32) if y.dtype.kind == "f" else y

    # -- running -------------------------------------------------------------

    def _as_input_list(self, x: Any) -> list[np.ndarray]:
        if isinstance(x, Mapping):
            try:
                arrays = [np.asarray(x[s.name]) for s in self.inputs]
            except KeyError as e:
                raise errors.UserInputError(
                    f"Missing input {e}; the model's inputs are {[s.name for s in self.inputs]}. "
                    + errors.received(keys=sorted(x))
                ) from None
        elif isinstance(x, Sequence) and not isinstance(x, np.ndarray) and len(self.inputs) > 1:
            arrays = [np.asarray(a) for a in x]
        else:
            arrays = [np.asarray(x)]
        if len(arrays) != len(self.inputs):
            raise errors.UserInputError(
                f"The model takes {len(self.inputs)} input(s); got {len(arrays)}. "
                + errors.received(num_inputs=len(arrays))
            )
        n = None
        for a, spec in zip(arrays, self.inputs, strict=True):
            sample = spec.shape_signature[1:] if len(spec.shape_signature) else ()
            ok = a.ndim == len(spec.shape_signature) and all(
                want in (-1, got) for want, got in zip(sample, a.shape[1:], strict=True)
            )
            if not ok:
                raise errors.UserInputError(
                    f"Input {spec.name!r} expects a batch of shape "
                    f"{[None if d == -1 else d for d in spec.shape_signature]} (first dimension "
                    "is the batch); the data does not fit. Reshape the data or check that it "
                    "belongs to this model. "
                    + errors.received(shape=list(a.shape), dtype=str(a.dtype))
                )
            if a.dtype.kind not in "fiub":
                raise errors.UserInputError(
                    f"Input {spec.name!r} expects numbers ({spec.dtype}). "
                    + errors.received(dtype=str(a.dtype))
                )
            if n is not None and a.shape[0] != n:
                raise errors.UserInputError(
                    "All inputs must have the same number of samples. "
                    + errors.received(sizes=[b.shape[0] for b in arrays])
                )
            n = a.shape[0]
        return arrays

    def _resize(self, batch: int) -> None:
        if self._batch == batch:
            return
        for spec in self.inputs:
            self.interpreter.resize_tensor_input(
                spec.index, [batch, *spec.shape_signature[1:]], strict=True
            )
        with _compat.quiet_litert():
            self.interpreter.allocate_tensors()
        self._batch = batch
        self._refresh_specs()

    def invoke(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Runs one invoke on arrays already in the input dtypes and allocated shapes."""
        for spec, a in zip(self.inputs, feeds, strict=True):
            self.interpreter.set_tensor(spec.index, a)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(spec.index) for spec in self.outputs]

    def predict(
        self, x: Any, *, batch_size: int = 64, dequantize: bool = True
    ) -> np.ndarray | list[np.ndarray]:
        """Runs the model on a batch of samples of any size.

        Args:
          x: an array (one input), a list of arrays (several), or a dict by input name.
            Float data is quantized for integer inputs; integer data in the input's
            dtype is passed through.
          batch_size: samples per invoke when the model has a dynamic batch dimension;
            models converted with a fixed batch run one batch of that size at a time.
          dequantize: return float32 outputs (True) or the raw output dtype.

        Returns:
          One array for a single-output model, else a list in output order.
        """
        arrays = self._as_input_list(x)
        n = arrays[0].shape[0]
        step = batch_size if self.dynamic_batch else max(1, self.inputs[0].shape_signature[0])
        results: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, n, step):
            chunk = [a[start : start + step] for a in arrays]
            size = chunk[0].shape[0]
            if self.dynamic_batch:
                self._resize(size)
            elif size != step:  # pad the last partial batch of a fixed-batch model
                chunk = [np.concatenate([c, np.repeat(c[-1:], step - size, 0)]) for c in chunk]
            feeds = [self.quantize(c, spec) for c, spec in zip(chunk, self.inputs, strict=True)]
            outs = self.invoke(feeds)
            for i, (y, spec) in enumerate(zip(outs, self.outputs, strict=True)):
                y = y[:size]
                results[i].append(self.dequantize(y, spec) if dequantize else y.copy())
        merged = [np.concatenate(r) if r else np.zeros((0,)) for r in results]
        return merged[0] if len(merged) == 1 else merged


class ModelCrashed(errors.UserInputError):
    """The interpreter died (a signal) or hung while running a `.tflite` file in a child.

    A `UserInputError`: the file is the user's to fix or replace, and commands exit
    with status 2 on it. The calling process is unharmed.
    """


def predict_isolated(
    model: str | os.PathLike | bytes,
    x: Any,
    *,
    batch_size: int = 64,
    num_threads: int | None = None,
    use_xnnpack: bool = True,
    timeout: float | None = 3600.0,
    memory_limit_mb: int | None = None,
    what: str = "<bytes>",
) -> np.ndarray | list[np.ndarray]:
    """`LiteModel(model).predict(x)` in a child process, for files from outside.

    The bytes are validated here (the structural checks cannot crash), then a fresh
    child (`edgekit.lite.sandbox.run_python`) loads them and runs every batch; only the
    outputs come back. A file that crashes or hangs the interpreter -- on zeros or only
    on some data -- ends the child, never the caller, and raises `ModelCrashed`.
    Starting the child costs about half a second.

    Args:
      model: a `.tflite` path or its bytes.
      x: an array, a list of arrays, or a dict by input name, as `LiteModel.predict`.
      batch_size, num_threads, use_xnnpack: as `LiteModel`.
      timeout: seconds the whole run may take; None for no limit.
      memory_limit_mb: address-space cap of the child; None for 4 GiB plus four times
        the input bytes.
      what: how the error names the file (its path).

    Returns:
      What `LiteModel.predict` returns (float32 outputs).

    Raises:
      UserInputError: the file fails a structural check, the interpreter refuses it, or
        the data does not fit it (the child's own message).
      ModelCrashed: the interpreter crashed (e.g. SIGSEGV) or hung on the file.
    """
    data = read_model_bytes(model)
    lite_validate.check_model_bytes(data)
    if isinstance(x, Mapping):
        names, arrays = [str(k) for k in x], [np.asarray(v) for v in x.values()]
    elif isinstance(x, (list, tuple)):
        names, arrays = None, [np.asarray(a) for a in x]
    else:
        names, arrays = None, [np.asarray(x)]
    if memory_limit_mb is None:
        memory_limit_mb = 4096 + 4 * sum(a.nbytes for a in arrays) // 2**20
    with tempfile.TemporaryDirectory(prefix="edgekit-predict-") as tmp:
        folder = pathlib.Path(tmp)
        (folder / "model.tflite").write_bytes(data)
        np.savez(folder / "inputs.npz", *arrays)
        options = {
            "names": names,
            "single": not isinstance(x, (Mapping, list, tuple)),
            "batch_size": batch_size,
            "num_threads": num_threads,
            "use_xnnpack": use_xnnpack,
        }
        (folder / "options.json").write_text(json.dumps(options))
        code = "import sys; from edgekit import runtime; runtime._child_predict(sys.argv[1])"
        outcome = sandbox.run_python(
            ["-c", code, tmp], timeout=timeout, memory_limit_mb=memory_limit_mb
        )
        error = folder / "error.json"
        if error.is_file():
            raise errors.UserInputError(json.loads(error.read_text())["message"])
        if outcome.status == "ok" and (folder / "outputs.npz").is_file():
            with np.load(folder / "outputs.npz") as z:
                outs = [z[f"arr_{i}"] for i in range(len(z.files))]
            return outs[0] if len(outs) == 1 else outs
    raise _crash_error(outcome, what, len(data))


def _crash_error(outcome: sandbox.ChildOutcome, what: str, size: int) -> ModelCrashed:
    tail = outcome.stderr_tail.splitlines()[-1][-300:] if outcome.stderr_tail else ""
    if outcome.status == "timeout":
        happened = "hung the LiteRT runtime (no result in time; the process was stopped)"
    elif outcome.status == "crash":
        happened = f"crashed the interpreter: the LiteRT runtime died with {outcome.signal}"
    else:
        happened = (
            f"stopped the LiteRT runtime: its process exited with status {outcome.returncode} "
            "without a result (out of memory, or a runtime abort)"
        )
    return ModelCrashed(
        f"The file {what} {happened} while running it. It ran in a separate process, so only "
        "that process died. The file is malformed or hits a runtime bug: check it with "
        "edgekit-inspect, or re-convert it from the original model."
        + (f" Last runtime output: {tail}." if tail else "")
        + " "
        + errors.received(
            model=what, signal=outcome.signal, status=outcome.status, model_size_bytes=size
        )
    )


def _child_predict(folder: str) -> None:
    """The child of `predict_isolated`: loads, predicts, writes outputs or the error."""
    where = pathlib.Path(folder)
    opts = json.loads((where / "options.json").read_text())
    with np.load(where / "inputs.npz") as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    x: Any = (
        dict(zip(opts["names"], arrays, strict=True))
        if opts["names"]
        else arrays[0]
        if opts["single"]
        else arrays
    )
    try:
        lm = LiteModel(
            where / "model.tflite",
            num_threads=opts["num_threads"],
            use_xnnpack=opts["use_xnnpack"],
            validate=False,  # validated by the caller
        )
        out = lm.predict(x, batch_size=opts["batch_size"])
    except errors.UserInputError as e:
        (where / "error.json").write_text(json.dumps({"message": str(e)}))
        return
    outs = out if isinstance(out, list) else [out]
    tmp = where / "outputs.tmp.npz"
    np.savez(tmp, *outs)
    os.replace(tmp, where / "outputs.npz")
    sys.stdout.flush()
