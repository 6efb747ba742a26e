"""Configs of the deployment stages: convert, evaluate, benchmark, bundle.

Example:
    >>> cfg = ConvertConfig(mode="int8", io_type="uint8")
    >>> cfg.to_dict()["mode"]
    'int8'
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import urllib.parse

from edgekit import errors
from edgekit.config import base


class ConvertMode(str, enum.Enum):
    """Post-training conversion modes.

    FLOAT32: no quantization. DYNAMIC: int8 weights, float activations (no data
    needed). FLOAT16: float16 weights, dequantized on load. INT8: full integer;
    every op int8 (needs calibration data). INT8_FLOAT_FALLBACK: integer where the
    op has an int8 kernel, float elsewhere. INT16X8: int16 activations, int8 weights.
    """

    FLOAT32 = "float32"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    INT8 = "int8"
    INT8_FLOAT_FALLBACK = "int8_float_fallback"
    INT16X8 = "int16x8"

    @property
    def needs_calibration(self) -> bool:
        return self in (ConvertMode.INT8, ConvertMode.INT8_FLOAT_FALLBACK, ConvertMode.INT16X8)


class IOType(str, enum.Enum):
    """The dtype of a converted model's inputs and outputs."""

    FLOAT32 = "float32"
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"


class Backend(str, enum.Enum):
    """Who quantizes: TensorFlow's TFLite converter, or LiteRT Quantizer (on a float .tflite)."""

    CONVERTER = "converter"
    LITERT_QUANTIZER = "litert_quantizer"


# Every scheme (LiteRT Quantizer's recipe names), the mode of the file it makes, and
# the backends that offer it. The converter makes three of them as its own modes.
SCHEMES = {
    "static_wi8_ai8": (ConvertMode.INT8, (Backend.CONVERTER, Backend.LITERT_QUANTIZER)),
    "static_wi8_ai16": (ConvertMode.INT16X8, (Backend.CONVERTER, Backend.LITERT_QUANTIZER)),
    "dynamic_wi8_afp32": (ConvertMode.DYNAMIC, (Backend.CONVERTER, Backend.LITERT_QUANTIZER)),
    "dynamic_wi4_afp32": (ConvertMode.DYNAMIC, (Backend.LITERT_QUANTIZER,)),
    "weight_only_wi8_afp32": (ConvertMode.DYNAMIC, (Backend.LITERT_QUANTIZER,)),
    "weight_only_wi4_afp32": (ConvertMode.DYNAMIC, (Backend.LITERT_QUANTIZER,)),
}
BLOCK_SIZES = (32, 64, 128, 256)


# Which input/output types each mode can produce. The converter itself would
# accept some odd pairs and then fail late or silently keep float; refuse early.
_IO_TYPES_BY_MODE = {
    ConvertMode.FLOAT32: (IOType.FLOAT32,),
    ConvertMode.DYNAMIC: (IOType.FLOAT32,),
    ConvertMode.FLOAT16: (IOType.FLOAT32,),
    ConvertMode.INT8: (IOType.FLOAT32, IOType.INT8, IOType.UINT8),
    ConvertMode.INT8_FLOAT_FALLBACK: (IOType.FLOAT32,),
    ConvertMode.INT16X8: (IOType.FLOAT32, IOType.INT16),
}


@dataclasses.dataclass(frozen=True)
class ConvertConfig(base.Config):
    """How to convert a Keras model to a `.tflite` flatbuffer.

    Attributes:
      mode: the post-training mode (see `ConvertMode`).
      io_type: dtype of the model's inputs and outputs; integer types only for the
        full-integer modes (int8/uint8 with `int8`, int16 with `int16x8`).
      num_calibration_samples: how many samples, spread evenly over the given data,
        calibrate activation ranges (modes that need calibration only).
      allow_select_tf_ops: let ops without a TFLite builtin run as Select TF ops
        (needs the Flex delegate on the device, several MB).
      sparse_weights: store sparse weights with TFLite's sparse encoding
        (`EXPERIMENTAL_SPARSITY`); useful after pruning.
      per_channel: quantize conv weights with one scale per output channel (the
        default, safest for accuracy). False uses one scale per tensor: each channel
        otherwise costs a float32 scale and an int64 zero point for its weights and
        again for its bias (about 36 KB on the 139k-parameter example), so on small
        models per-tensor files are markedly smaller; check the accuracy.
      choose_granularity: int8 modes: convert with per-channel and with per-tensor
        weights and keep the per-tensor file when its outputs agree with the float
        model's as well (top-1 agreement, or mean cosine for other outputs, on the
        calibration samples, within 0.5 points) and it is smaller after gzip;
        otherwise keep the per-channel one. Pruned models gain most: their per-channel
        scales are a large part of what does not compress. `converter_settings`
        records both measurements. Not for quantization-aware-trained models (their
        granularity was fixed in training). None (the default): measure whenever
        calibration data is given and `per_channel` is not False; False forces
        `per_channel` as given.
      backend: who quantizes: "converter" (TensorFlow's TFLite converter) or
        "litert_quantizer" (LiteRT Quantizer, applied to the float32 .tflite).
      scheme: a LiteRT Quantizer recipe name (see `SCHEMES`); it sets `mode` to the
        mode of the file it makes (weight-only schemes count as "dynamic": integer
        weights, float activations, no calibration). Needed by "litert_quantizer".
      block_size: LiteRT Quantizer's dynamic and weight-only schemes: one weight
        scale per block of this many input values (32, 64, 128 or 256) instead of
        one per output channel, on the ops that have blockwise kernels (fully
        connected ops with the dynamic schemes); None for per-channel.
      batch_size: fix the batch dimension of the file's inputs at this size (1 is
        what edge inference runs). None keeps it free, as the Keras model has it:
        the converter then computes the shape of each Reshape at run time (SHAPE,
        STRIDED_SLICE, PACK ops, which XNNPack does not take, so the graph is split
        into several delegate partitions). Keras models only; LiteModel.predict
        runs any number of samples on a fixed-batch file.
      float_scopes: selective quantization: regular expressions of op scopes that
        stay float (LiteRT Quantizer matches each against an op's output tensor name
        followed by ";", as `edgekit-inspect` lists the names and
        `edgekit-quantize --float_scope` takes them; `^name;` keeps exactly one op).
        Only with backend "litert_quantizer" and a static scheme; each must match an
        op of the model. `edgekit-tune`'s `lq_static_selective` candidate writes the
        scopes its search found here, so its recipe replays to the same file.
    """

    mode: ConvertMode = ConvertMode.FLOAT32
    io_type: IOType = IOType.FLOAT32
    num_calibration_samples: int = 300
    allow_select_tf_ops: bool = False
    sparse_weights: bool = False
    per_channel: bool = True
    choose_granularity: bool | None = None
    backend: Backend = Backend.CONVERTER
    scheme: str | None = None
    block_size: int | None = None
    batch_size: int | None = None
    float_scopes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._coerce_enums()
        self._check_backend()
        self._check_float_scopes()
        base.check(
            self.batch_size is None
            or (isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool))
            and self.batch_size >= 1,
            "batch_size fixes the batch dimension: a whole number >= 1 (1 for edge "
            "inference), or None to keep it free.",
            batch_size=self.batch_size,
        )
        allowed = _IO_TYPES_BY_MODE[self.mode]
        base.check(
            self.io_type in allowed,
            f"io_type {self.io_type.value!r} does not go with mode {self.mode.value!r}: "
            f"that mode allows {[t.value for t in allowed]}. Use mode='int8' for int8/uint8 "
            "inputs and outputs, mode='int16x8' for int16.",
            mode=self.mode.value,
            io_type=self.io_type.value,
        )
        base.check(
            isinstance(self.num_calibration_samples, int) and self.num_calibration_samples >= 1,
            "num_calibration_samples must be a whole number >= 1 (a few hundred is typical).",
            num_calibration_samples=self.num_calibration_samples,
        )
        base.check(
            self.choose_granularity is not True
            or self.mode in (ConvertMode.INT8, ConvertMode.INT8_FLOAT_FALLBACK),
            "choose_granularity picks per-channel or per-tensor int8 weights; it needs mode "
            "'int8' or 'int8_float_fallback'.",
            mode=self.mode.value,
            choose_granularity=self.choose_granularity,
        )

    def _check_backend(self) -> None:
        names = {
            Backend.CONVERTER: "The TFLite converter",
            Backend.LITERT_QUANTIZER: "LiteRT Quantizer",
        }
        here, other = names[self.backend], [b for b in Backend if b is not self.backend][0]
        if self.scheme is not None:
            base.check(
                self.scheme in SCHEMES,
                f"Unknown scheme: expected one of {sorted(SCHEMES)}.",
                scheme=self.scheme,
            )
            mode, backends = SCHEMES[self.scheme]
            base.check(
                self.backend in backends,
                f"{here} has no scheme {self.scheme!r}; {names[other]} has it: set "
                f"backend={other.value!r} (--backend={other.value}).",
                backend=self.backend.value,
                scheme=self.scheme,
            )
            base.check(
                self.mode in (ConvertMode.FLOAT32, mode),
                f"Scheme {self.scheme!r} makes a {mode.value!r} file; leave mode out or set "
                f"mode={mode.value!r}.",
                mode=self.mode.value,
                scheme=self.scheme,
            )
            object.__setattr__(self, "mode", mode)
        lq = self.backend is Backend.LITERT_QUANTIZER
        base.check(
            not lq or self.scheme is not None,
            f"backend 'litert_quantizer' needs a scheme, one of {sorted(SCHEMES)}.",
            backend=self.backend.value,
            scheme=self.scheme,
        )
        base.check(
            not lq or (self.io_type is not IOType.UINT8 and self.choose_granularity is not True),
            "uint8 inputs/outputs and choose_granularity are the TFLite converter's: set "
            "backend='converter' (--backend=converter).",
            io_type=self.io_type.value,
            choose_granularity=self.choose_granularity,
        )
        weights_only = self.scheme is not None and not self.scheme.startswith("static")
        base.check(
            self.block_size is None or (lq and weights_only and self.block_size in BLOCK_SIZES),
            f"block_size is for LiteRT Quantizer's dynamic and weight-only schemes and must be "
            f"one of {list(BLOCK_SIZES)}.",
            backend=self.backend.value,
            scheme=self.scheme,
            block_size=self.block_size,
        )

    def _check_float_scopes(self) -> None:
        base.check(
            isinstance(self.float_scopes, tuple)
            and all(isinstance(s, str) and s for s in self.float_scopes),
            "float_scopes is a list of regular expressions (op scopes to keep float), for "
            'example ["^model/conv2d/Relu;"].',
            float_scopes=self.float_scopes,
        )
        if not self.float_scopes:
            return
        static = (self.scheme or "").startswith("static")
        base.check(
            self.backend is Backend.LITERT_QUANTIZER and static,
            "float_scopes keeps ops float in a file whose other ops have integer activations: "
            "it needs backend 'litert_quantizer' and a static scheme ('static_wi8_ai8' or "
            "'static_wi8_ai16'). Set them, or drop float_scopes.",
            backend=self.backend.value,
            scheme=self.scheme,
            float_scopes=list(self.float_scopes),
        )
        for scope in self.float_scopes:
            try:
                re.compile(scope)
            except re.error as e:
                raise errors.UserInputError(
                    f"float_scopes entry {scope!r} is not a valid regular expression ({e}). "
                    + errors.received(float_scopes=list(self.float_scopes))
                ) from None


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(base.Config):
    """How to evaluate a `.tflite` model on data.

    Attributes:
      top_k: the k values of top-k accuracy to report (classifiers only).
      batch_size: samples per interpreter call when the model takes a dynamic batch.
      max_samples: evaluate at most this many samples (spread evenly); None for all.
      num_threads: interpreter threads; None lets the runtime choose.
    """

    top_k: tuple[int, ...] = (1, 5)
    batch_size: int = 64
    max_samples: int | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        self._coerce_enums()
        base.check(
            len(self.top_k) > 0 and all(isinstance(k, int) and k >= 1 for k in self.top_k),
            "top_k must be a non-empty list of whole numbers >= 1, for example [1, 5].",
            top_k=self.top_k,
        )
        base.check(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            "batch_size must be a whole number >= 1.",
            batch_size=self.batch_size,
        )
        base.check(
            self.max_samples is None
            or (isinstance(self.max_samples, int) and self.max_samples >= 1),
            "max_samples must be None (all samples) or a whole number >= 1.",
            max_samples=self.max_samples,
        )
        base.check(
            self.num_threads is None
            or (isinstance(self.num_threads, int) and self.num_threads >= 1),
            "num_threads must be None (runtime default) or a whole number >= 1.",
            num_threads=self.num_threads,
        )


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig(base.Config):
    """How to measure, in the spirit of TFLite's `benchmark_model`.

    Attributes:
      num_threads: interpreter threads.
      threads_sweep: if set, one measurement (one fresh process) per thread count,
        instead of `num_threads`.
      warmup_runs, warmup_min_secs: warm-up lasts at least this many runs and seconds.
      num_runs, min_secs: the steady state lasts at least this many runs and seconds...
      max_secs: ...but stops after this many seconds (at least one run).
      use_xnnpack: apply the XNNPack delegate (LiteRT's default CPU path).
      signature: the signature key to run; None runs the main subgraph.
      cpu_affinity: pin the measuring process to these core ids.
      seed: seed of the random inputs (used when no input data is given).
      profile: also estimate time per op by timing truncated prefixes of the graph.
      profile_max_cuts: at most this many prefixes are timed (bigger graphs are
        cut into segments).
      timeout_secs: kill a measurement after this long; None derives it from max_secs.
      target: None for this machine, or `ssh://user@host[:port]`.
      ssh_key: private key file for the target (else the SSH agent / default keys).
      ssh_options: extra `ssh -o` options, such as `StrictHostKeyChecking=no`.
      remote_python: the Python to run on the target.
    """

    num_threads: int = 1
    threads_sweep: tuple[int, ...] = ()
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    num_runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    use_xnnpack: bool = True
    signature: str | None = None
    cpu_affinity: tuple[int, ...] = ()
    seed: int = 0
    profile: bool = False
    profile_max_cuts: int = 64
    timeout_secs: float | None = None
    target: str | None = None
    ssh_key: str | None = None
    ssh_options: tuple[str, ...] = ()
    remote_python: str = "python3"

    def __post_init__(self) -> None:
        self._coerce_enums()
        for name in ("num_threads", "num_runs", "profile_max_cuts"):
            base.check_whole(name, getattr(self, name), low=1 if name != "profile_max_cuts" else 2)
        base.check_whole("warmup_runs", self.warmup_runs, low=0)
        base.check_whole("seed", self.seed, low=0)
        for t in self.threads_sweep:
            base.check_whole("threads_sweep", t, low=1)
        for c in self.cpu_affinity:
            base.check_whole("cpu_affinity", c, low=0)
        for name in ("warmup_min_secs", "min_secs"):
            base.check_seconds(name, getattr(self, name), low=0.0)
        base.check_seconds("max_secs", self.max_secs, low=1e-3)
        if self.timeout_secs is not None:
            base.check_seconds("timeout_secs", self.timeout_secs, low=1.0)
        if self.min_secs > self.max_secs:
            raise errors.UserInputError(
                "min_secs must not exceed max_secs (max_secs stops the run). "
                + errors.received(min_secs=self.min_secs, max_secs=self.max_secs)
            )
        if self.target is not None:
            parse_target(self.target)
        if self.ssh_key is not None and not os.path.isfile(self.ssh_key):
            raise errors.UserInputError(
                f"No SSH private key file at {self.ssh_key!r}. Pass the path of an existing key, "
                "or leave it unset to use the SSH agent. " + errors.received(ssh_key=self.ssh_key)
            )

    def timeout_for(self, num_models: int) -> float:
        if self.timeout_secs is not None:
            return self.timeout_secs
        per_model = self.max_secs + max(self.warmup_min_secs, 0.0)
        return 120.0 + num_models * per_model * (3 if self.profile else 1)


def parse_target(target: str) -> tuple[str, str, int]:
    """Splits `ssh://user@host[:port]` into (user, host, port), or raises UserInputError."""
    parsed = urllib.parse.urlsplit(target)
    try:
        port = parsed.port or 22
    except ValueError:
        port = -1
    if (
        parsed.scheme != "ssh"
        or not parsed.username
        or not parsed.hostname
        or parsed.path not in ("", "/")
        or not 0 < port < 65536
    ):
        raise errors.UserInputError(
            "target must look like ssh://user@host or ssh://user@host:port (a Linux device "
            "reachable with SSH keys). " + errors.received(target=target)
        )
    return parsed.username, parsed.hostname, port


@dataclasses.dataclass(frozen=True)
class BundleConfig(base.Config):
    """What the deployment bundle carries besides the model.

    Attributes:
      labels: class names in output order, or a path to a labels.txt (one per line).
      normalization: (mean, std) the app applies to raw inputs: x = (raw - mean) / std.
      c_array: also write model_data.h / model_data.cc for TFLite Micro.
    """

    labels: tuple[str, ...] | str | None = None
    normalization: tuple[float, float] | None = None
    c_array: bool = False

    def __post_init__(self) -> None:
        self._coerce_enums()
        base.check(
            self.normalization is None
            or (
                len(self.normalization) == 2
                and all(isinstance(v, (int, float)) for v in self.normalization)
                and self.normalization[1] != 0
            ),
            "normalization must be [mean, std] with std != 0, for example [127.5, 127.5].",
            normalization=self.normalization,
        )
