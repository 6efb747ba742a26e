"""The device-side harness of `edgekit.benchmark`: the code that runs where the model runs.

Every module here imports only the standard library, numpy and ai-edge-litert (what an
edge device has) and reaches its siblings only by relative imports, so this folder works
both as `edgekit.benchmark.harness` and copied alone to a device over SSH (see
`edgekit.benchmark.remote`). The measuring modules run with Python 3.8 or newer.

The measuring process, `python <this folder> SPEC.json RESULT.json` (`__main__.py`):
    protocol    what parent and child exchange: stage markers on stderr, ChildError
    child       the process: SPEC.json in, RESULT.json out; models interleaved
    timing      one model's load, first run, warm-up and steady state; latency statistics
    runner      a model in LiteRT's interpreter, its input tensors, one timed invoke
    inputs      seeded random inputs, or real ones from .npy/.npz
    machine     the CPU, ISA features, versions, load; the process's memory
    op_profile  per-op estimates from timed graph prefixes

What `python -m edgekit.benchmark` prints and parses (no absl on a device):
    report      the printed report and `format_table`, which every edgekit command uses
    cli         the device-side flags (argparse)
"""
