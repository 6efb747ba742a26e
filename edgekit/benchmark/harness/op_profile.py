"""Per-op time estimates for the benchmark harness, by timing truncated graph prefixes.

Runs inside the measuring process (`child.py`), locally or on a device, so it imports
only the standard library, numpy, flatbuffers and the schema that ships in
ai-edge-litert, and nothing from edgekit outside this folder.
"""

from __future__ import annotations

import os
import time
from typing import Any

from . import protocol, runner

PROFILE_METHOD = (
    "Estimates, not a trace: the model is cut after op k (the flatbuffer's operator "
    "list truncated and op k's outputs made the graph outputs; the empty graph is the "
    "baseline), each prefix is loaded in its own interpreter and timed (fastest of the "
    "runs, over a forward and a backward pass), the prefix times are made non-decreasing "
    "by isotonic regression (pool adjacent violators), and op k's time is "
    "T(prefix k) - T(prefix k-1). Delegate partitioning, fusion and cache state change "
    "with the cut, so figures are approximate; when the model has more ops than cuts, "
    "a segment's time is shared equally among its ops."
)


def _monotone(values: list) -> tuple:
    """Least-squares non-decreasing fit (pool adjacent violators); returns (fit, violations)."""
    blocks: list = []  # [sum, count]
    violations = 0
    for v in values:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s2, c2 = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += c2
            violations += 1
    fit: list = []
    for total, count in blocks:
        fit.extend([total / count] * count)
    return fit, violations


def _op_names(model_t, schema) -> list:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for code in model_t.operatorCodes or []:
        builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
        if builtin == schema.BuiltinOperator.CUSTOM:
            cc = code.customCode
            out.append("CUSTOM:" + (cc.decode() if isinstance(cc, bytes) else str(cc)))
        else:
            out.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return out


def profile(measured: Any, spec: dict) -> dict:
    """Per-op estimates for the first model, `measured` (a `timing.Measured`)."""
    import flatbuffers
    import numpy as np

    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as e:
        return {"error": f"the flatbuffer schema is not available: {e}"}
    if measured.runner.subgraph != 0:
        return {"error": "the per-op profile covers the main subgraph only"}
    base = spec["_base"]
    with open(os.path.join(base, spec["models"][0]["path"]), "rb") as f:
        content = f.read()
    model_t = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    sub = model_t.subgraphs[0]
    ops = list(sub.operators or [])
    n = len(ops)
    if n == 0:
        return {"error": "the model has no operators"}
    type_names = _op_names(model_t, schema)
    op_types = [type_names[op.opcodeIndex] for op in ops]
    max_cuts = max(2, int(spec.get("profile_max_cuts", 64)))
    if n <= max_cuts:
        cuts = list(range(n))
    else:
        cuts = sorted({int(round(x)) for x in np.linspace(0, n - 1, max_cuts)})
    runs = int(spec.get("profile_runs") or max(3, min(20, spec["num_runs"])))
    saved = (sub.operators, sub.outputs, model_t.signatureDefs)
    model_t.signatureDefs = None
    feeds = measured.feed_sets[0]

    def time_prefix(k: int) -> float | None:
        sub.operators = ops[: k + 1]
        outs = [t for t in (ops[k].outputs if k >= 0 else sub.inputs) if t >= 0]
        sub.outputs = np.asarray(outs, dtype=np.int32)
        b = flatbuffers.Builder(1024)
        b.Finish(model_t.Pack(b), file_identifier=b"TFL3")
        try:
            interp = runner.make_interpreter(
                bytes(b.Output()), spec["num_threads"], spec["use_xnnpack"]
            )
        except protocol.ChildError:
            return None
        r = runner.Runner(interp, None)
        r.set_inputs(feeds)
        for _ in range(2):
            r.invoke()
        return min(runner.timed(r.invoke) for _ in range(runs))

    # Two passes, forward then backward, keeping each prefix's fastest run: the
    # minimum is the figure least disturbed by other load, and the two directions
    # cancel slow drift.
    points = [-1, *cuts]
    best: dict = {}
    start = time.perf_counter()
    passes = 0
    for order in (points, points[::-1]):
        for k in order:
            t = time_prefix(k)
            if t is not None:
                best[k] = min(t, best.get(k, t))
        passes += 1
        if time.perf_counter() - start > spec["max_secs"] / 2:
            break
    sub.operators, sub.outputs, model_t.signatureDefs = saved
    measured_points = [k for k in points if k in best]
    fitted, violations = _monotone([best[k] for k in measured_points])
    per_op = [0.0] * n
    prev_t, prev_k = (fitted[0], -1) if measured_points and measured_points[0] == -1 else (0.0, -1)
    measured_upto = -1
    for k, t in zip(measured_points, fitted):  # noqa: B905 (Python 3.8+)
        if k == -1:
            continue
        seg = list(range(prev_k + 1, k + 1))
        for j in seg:
            per_op[j] = (t - prev_t) / len(seg)
        prev_t, prev_k, measured_upto = t, k, k
    base_us = best.get(-1, 0.0)
    clamped = violations
    by_type: dict = {}
    for t, us in zip(op_types, per_op):  # noqa: B905 (Python 3.8+)
        e = by_type.setdefault(t, {"op_type": t, "count": 0, "total_us": 0.0})
        e["count"] += 1
        e["total_us"] += us
    total = sum(per_op) or 1.0
    rows = sorted(by_type.values(), key=lambda e: -e["total_us"])
    for e in rows:
        e["share"] = e["total_us"] / total
    slowest = sorted(range(n), key=lambda j: -per_op[j])[:10]
    tensors = sub.tensors or []

    def tensor_name(op) -> str:
        outs = [t for t in (op.outputs if op.outputs is not None else []) if t >= 0]
        if not outs:
            return ""
        nm = tensors[outs[0]].name
        return nm.decode("utf-8", "replace") if isinstance(nm, bytes) else str(nm)

    return {
        "estimate": True,
        "method": PROFILE_METHOD,
        "num_ops": n,
        "num_cuts": len(cuts),
        "ops_covered": measured_upto + 1,
        "runs_per_cut": runs,
        "passes": passes,
        "empty_graph_us": base_us,
        "full_model_us": best.get(cuts[-1]),
        "sum_of_estimates_us": sum(per_op),
        "monotone_violations": clamped,
        "by_op_type": rows,
        "slowest_ops": [
            {"index": j, "op_type": op_types[j], "us": per_op[j], "output": tensor_name(ops[j])}
            for j in slowest
        ],
    }
