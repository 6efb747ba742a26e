"""edgekit-inspect: what is inside a .tflite file, without running it.

edgekit-inspect --model=model.tflite [--json=report.json] [--ram_kb=256] [--flash_kb=1024]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from absl import flags

from edgekit import io
from edgekit.cli import _common

if TYPE_CHECKING:
    from edgekit.lite.inspect import ModelReport

_MODEL = flags.DEFINE_string("model", None, "The .tflite file to inspect.")
_JSON = flags.DEFINE_string("json", None, "Also write the full report as JSON to this path.")
_RAM_KB = flags.DEFINE_float(
    "ram_kb", None, "RAM budget in KiB: does the arena fit?", lower_bound=0
)
_FLASH_KB = flags.DEFINE_float(
    "flash_kb", None, "Flash budget in KiB: does the file fit?", lower_bound=0
)
_TOP = flags.DEFINE_integer(
    "top", 10, "How many of the largest weight tensors to list.", lower_bound=0
)
_OPS = flags.DEFINE_boolean("ops", False, "List every op with its input and output tensors.")
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace an existing --json file.")


def main(argv: Sequence[str]) -> None:
    del argv
    from edgekit.lite import inspect as inspect_lib

    if _JSON.value:
        io.check_output_path(_JSON.value, overwrite=_OVERWRITE.value, what="json report")
    r = inspect_lib.inspect_model(_MODEL.value, ram_kb=_RAM_KB.value, flash_kb=_FLASH_KB.value)
    print_report(r, top=_TOP.value, ops=_OPS.value)
    if _JSON.value:
        r.save(_JSON.value, overwrite=_OVERWRITE.value)
        print(f"\nwrote {_JSON.value}")


def print_report(r: ModelReport, *, top: int = 10, ops: bool = False) -> None:
    """Prints the human summary of a `ModelReport`."""
    size = r.size
    print(
        f"{r.file_size} bytes, schema v{r.schema_version}, {r.num_subgraphs} subgraph(s), "
        f"{len(r.ops)} ops, {r.params} params, {r.total_macs} MACs"
    )
    print("\nInputs and outputs (subgraph 0):")
    rows = [
        [kind, d["name"], d["dtype"], d["shape_signature"], d["scale"], d["zero_point"],
         d["quantization"]["kind"]]
        for kind, ds in (("input", r.inputs), ("output", r.outputs))
        for d in ds
    ]  # fmt: skip
    _common.print_table(rows, ["", "name", "dtype", "shape", "scale", "zero_point", "quant"])
    for s in r.signatures:
        print(
            f"signature {s['key']!r} (subgraph {s['subgraph']}): inputs "
            f"{[i['name'] for i in s['inputs']]}, outputs {[o['name'] for o in s['outputs']]}"
        )
    print("\nOps:")
    _common.print_table(
        [[name, n, r.macs_by_op_type.get(name)] for name, n in r.op_counts.items()],
        ["op", "count", "MACs"],
    )
    if ops:
        _common.print_table(
            [[op["subgraph"], op["index"], op["type"], op["inputs"], op["outputs"], op["macs"] or None,
              "yes" if op["xnnpack"] else "no"] for op in r.ops],
            ["subgraph", "op", "type", "input tensors", "output tensors", "MACs", "XNNPack"],
        )  # fmt: skip
    for c in r.custom_ops:
        print(f"custom op {c['name']}: needs {c['runtime']}")
    if r.xnnpack_unsupported:
        print(f"not taken by XNNPack (run on builtin kernels): {', '.join(r.xnnpack_unsupported)}")
    print("\nSize:")
    print(
        f"weights {size['weights_bytes']} bytes ({size['weights_share']:.1%} of the file), "
        f"metadata {size['metadata_bytes']}, other buffers {size['other_buffer_bytes']}, "
        f"flatbuffer structure {size['structure_bytes']}"
    )
    tensors = {(t["subgraph"], t["index"]): t for t in r.tensors}
    rows = []
    for w in size["by_weight_tensor"][:top]:
        t = tensors[(w["subgraph"], w["index"])]
        rows.append([w["name"][:48], t["dtype"], t["shape"], w["bytes"], f"{w['share']:.1%}",
                     t["quantization"], t["zero_fraction"], t["sparse_encoded"]])  # fmt: skip
    if rows:
        _common.print_table(
            rows, ["weight tensor", "dtype", "shape", "bytes", "share", "quant", "zeros", "sparse"]
        )
    heavy = sorted((op for op in r.ops if op["weight_bytes"]), key=lambda op: -op["weight_bytes"])
    if heavy:
        _common.print_table(
            [[op["subgraph"], op["index"], op["type"], op["weight_bytes"], f"{op['weight_share']:.1%}",
              op["macs"] or None] for op in heavy[:top]],
            ["subgraph", "op", "type", "weight bytes", "share", "MACs"],
        )  # fmt: skip
    m = r.memory
    print("\nMemory:")
    print(
        f"activation arena estimate {m['arena_bytes']} bytes (largest single activation "
        f"{m['largest_activation_bytes']}, sum of all {m['sum_activation_bytes']}; "
        f"{m['method']}); weights {m['weights_bytes']} bytes"
    )
    if m["fits_ram"] is not None:
        print(
            f"RAM budget {m['ram_kb']:g} KiB: arena {'fits' if m['fits_ram'] else 'does NOT fit'}"
        )
    if m["fits_flash"] is not None:
        print(
            f"flash budget {m['flash_kb']:g} KiB: file {'fits' if m['fits_flash'] else 'does NOT fit'}"
        )


def run() -> None:
    _common.run(main, required=("model",))


if __name__ == "__main__":
    run()
