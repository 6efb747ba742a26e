"""Where a measurement runs: the CPU, its ISA features, versions, load, and memory."""

from __future__ import annotations

import os
import platform
import sys

_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")


def _proc_status() -> dict:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return out


def rss_mb() -> float | None:
    return _proc_status().get("VmRSS")


def peak_rss_mb() -> float | None:
    peak = _proc_status().get("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return ru / (1024.0 * 1024.0) if sys.platform == "darwin" else ru / 1024.0
    except (ImportError, OSError):
        return None


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so peaks can be attributed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_model() -> tuple:
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key and key not in fields:
                    fields[key] = value.strip()
    except OSError:
        pass
    for key in ("model name", "hardware", "processor", "cpu model"):
        value = fields.get(key, "")
        if value and not value.isdigit():
            name = value
            break
    else:
        name = platform.processor() or ""
    try:
        with open("/proc/device-tree/model", "rb") as f:
            board = f.read().rstrip(b"\0").decode("utf-8", "replace")
        name = f"{name} ({board})" if name else board
    except OSError:
        pass
    if not name and fields.get("cpu part"):
        name = f"ARM CPU part {fields['cpu part']}"
    flags = (fields.get("flags") or fields.get("features") or "").split()
    return name or platform.machine(), [f for f in _ISA_FLAGS if f in flags]


def load_average():
    """The 1-minute load average (runnable processes), or None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def environment(num_threads: int | None, use_xnnpack: bool) -> dict:
    name, isa = cpu_model()
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        from importlib import metadata

        litert = metadata.version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - a missing distribution record must not stop a run
        litert = None
    import numpy as np

    return {
        "cpu_model": name,
        "isa_features": isa,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "cpu_affinity": affinity,
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "litert_version": litert,
        "num_threads": num_threads,
        "use_xnnpack": use_xnnpack,
        "load_average_start": load_average(),
    }
