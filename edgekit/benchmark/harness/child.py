"""The measuring process: one fresh process per measurement, locally or on a device.

Run as `python <harness folder> SPEC.json RESULT.json` (see `__main__.py`); paths in
SPEC.json are relative to its folder. See `protocol` for what comes back.
"""

from __future__ import annotations

import json
import os
import sys

from . import machine, op_profile, protocol, runner, timing


def measure(spec: dict, base: str) -> dict:
    import numpy as np

    models = [timing.Measured(e, spec, base) for e in spec["models"]]
    # Warm-up and the steady state interleave the models (A B A B ...), so drift in
    # clock speed or background load hits every model alike.
    protocol.stage("warm-up")
    if spec["warmup_runs"] > 0 or spec["warmup_min_secs"] > 0:
        timing.loop(
            lambda i: [m.step(i, m.warm) for m in models],
            runs=spec["warmup_runs"],
            min_secs=spec["warmup_min_secs"],
            max_secs=max(spec["warmup_min_secs"], spec["max_secs"]),
        )
    protocol.stage("steady state")
    timing.loop(
        lambda i: [m.step(i, m.times) for m in models],
        runs=spec["num_runs"],
        min_secs=spec["min_secs"],
        max_secs=spec["max_secs"],
    )
    results = [m.result(spec) for m in models]
    ratios = []
    base_t = np.asarray(models[0].times)
    for m in models[1:]:
        r = np.asarray(m.times) / base_t
        ratios.append(
            {
                "model": m.name,
                "baseline": models[0].name,
                "pairs": len(r),
                "min": float(r.min()),
                "median": float(np.median(r)),
                "max": float(r.max()),
                "mean_ratio": float(np.mean(m.times) / np.mean(models[0].times)),
            }
        )
    if spec.get("profile"):
        protocol.stage("profile")
        results[0]["profile"] = op_profile.profile(models[0], spec)
    return {"models": results, "ratios": ratios}


def run(spec_path: str) -> dict:
    with open(spec_path) as f:
        spec = json.load(f)
    base = os.path.dirname(os.path.abspath(spec_path))
    spec["_base"] = base
    if spec.get("cpu_affinity"):
        cores = [int(c) for c in spec["cpu_affinity"]]
        try:
            os.sched_setaffinity(0, cores)
        except AttributeError:
            raise protocol.ChildError(
                "user", "CPU affinity is not supported on this platform."
            ) from None
        except OSError as e:
            have = sorted(os.sched_getaffinity(0))
            raise protocol.ChildError(
                "user",
                f"Cannot pin to cores {cores} ({e}); this machine lets the process use cores "
                f"{have}. Pass a subset of them. Received: cpu_affinity={cores}",
            ) from None
    runner.interpreter_module()  # a missing runtime is reported as such, not as a crash
    env = machine.environment(spec["num_threads"], spec["use_xnnpack"])
    out = measure(spec, base)
    env["load_average_end"] = machine.load_average()
    out["environment"] = env
    out["ok"] = True
    return out


def main(argv: list) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: python HARNESS_FOLDER SPEC.json RESULT.json\n")
        return 64
    try:
        result = run(argv[1])
    except protocol.ChildError as e:
        result = {"ok": False, "error": {"kind": e.kind, "message": str(e)}}
    except MemoryError:
        result = {"ok": False, "error": {"kind": "runtime", "message": "out of memory"}}
    except Exception as e:  # noqa: BLE001 - reported to the parent with its type
        result = {"ok": False, "error": {"kind": "runtime", "message": f"{type(e).__name__}: {e}"}}
    tmp = argv[2] + ".partial"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, argv[2])
    return 0
