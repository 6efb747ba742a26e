"""The inputs of a measurement: seeded random values, or real data from .npy/.npz."""

from __future__ import annotations

from . import protocol

INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def random_feeds(specs: list, seed: int) -> list:
    """Random inputs spread over each input's range, the same stream for equal shapes."""
    import numpy as np

    feeds = []
    for i, spec in enumerate(specs):
        rng = np.random.default_rng([seed, i])
        u = rng.random(spec["shape"])
        dtype = spec["dtype"]
        if dtype in ("float32", "float16", "float64"):
            a = (2.0 * u - 1.0).astype(dtype)
        elif dtype in INT_RANGES and spec["scale"] is not None:
            lo, hi = INT_RANGES[dtype]
            a = np.floor(lo + u * (hi - lo + 1)).clip(lo, hi).astype(dtype)
        elif dtype == "bool":
            a = u < 0.5
        else:  # ids, counts: small non-negative values are valid for any embedding
            a = np.floor(u * 10).astype(dtype)
        feeds.append(a)
    return feeds


def load_input_data(path: str, specs: list) -> list:
    """Reads `.npy`/`.npz` input data and checks it against the inputs; returns feed sets."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise protocol.ChildError(
            "user", f"Could not read the input data {path!r} as .npy/.npz: {e}"
        ) from None
    names = [s["name"] for s in specs]
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise protocol.ChildError(
                "user",
                f"The model has {len(specs)} inputs {names}; a .npy file holds one array. Pass "
                "an .npz file with one array per input name.",
            )
        arrays = [loaded]
    else:
        keys = list(loaded.files)
        if all(n in keys for n in names):
            arrays = [loaded[n] for n in names]
        elif len(keys) == len(specs):
            arrays = [loaded[k] for k in keys]
        else:
            raise protocol.ChildError(
                "user",
                f"The .npz file has arrays {keys}; the model's inputs are {names}. Name the "
                "arrays after the inputs (or give exactly one array per input, in order).",
            )
    per_input = [_samples(a, s) for a, s in zip(arrays, specs)]  # noqa: B905 (Python 3.8+)
    n = min(len(p) for p in per_input)
    return [[p[i] for p in per_input] for i in range(n)]


def _samples(a, spec: dict) -> list:
    import numpy as np

    shape = list(spec["shape"])
    dtype = np.dtype(spec["dtype"])
    got = list(a.shape)
    if got == shape:
        samples = [a]
    elif len(got) == len(shape) + 1 and got[1:] == shape and got[0] >= 1:
        samples = [a[i] for i in range(got[0])]
    elif len(got) == len(shape) and got[1:] == shape[1:] and shape[0] == 1 and got[0] >= 1:
        samples = [a[i : i + 1] for i in range(got[0])]
    else:
        raise protocol.ChildError(
            "user",
            f"Input data for {spec['name']!r} has shape {got}; the input takes shape {shape} "
            f"(or a stack of them, {['N'] + shape}). Reshape the data or check that it belongs "
            f"to this model. Received: shape={got}, dtype={a.dtype.name!r}",
        )
    if a.dtype == dtype:
        return [np.ascontiguousarray(s) for s in samples]
    if spec["scale"] is not None and a.dtype.kind == "f" and dtype.name in INT_RANGES:
        lo, hi = INT_RANGES[dtype.name]
        return [
            np.clip(np.round(s / spec["scale"] + spec["zero_point"]), lo, hi).astype(dtype)
            for s in samples
        ]
    if a.dtype.kind == dtype.kind and np.can_cast(a.dtype, dtype, "same_kind"):
        return [np.ascontiguousarray(s, dtype=dtype) for s in samples]
    raise protocol.ChildError(
        "user",
        f"Input data for {spec['name']!r} is {a.dtype.name}; the input takes {dtype.name}"
        + (" (float data is quantized with the input's scale)" if spec["scale"] is not None else "")
        + ". Convert the data the way the model was trained (for example scale images to "
        f"float32). Received: shape={got}, dtype={a.dtype.name!r}",
    )
