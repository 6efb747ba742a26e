"""A digest of what a `.tflite` file computes, blind to what does not change the work.

Two conversions of one model can differ in bytes and still run the same kernels on the
same weights: a batch dimension fixed at 1 instead of free, another converter version
string, signature or metadata buffers. `graph_sha256` hashes only what the interpreter
computes with: every operator's kind in execution order, and for each of its inputs the
tensor type, its quantization parameters and its constant data. Files with equal digests
are the same computation, so a latency difference between them is measurement noise.
"""

from __future__ import annotations

import hashlib
import struct

from edgekit.lite import schema


def graph_sha256(blob: bytes) -> str:
    """The hex SHA-256 of the operators, input types, quantization and constant data."""
    model = schema.parse(blob)
    h = hashlib.sha256()
    for sg in model.subgraphs:
        h.update(b"subgraph")
        for op in sg.operators:
            code = model.operator_codes[op.opcode_index]
            h.update(struct.pack("<i", code.builtin_code))
            h.update((code.custom_code or "").encode())
            for i in op.inputs:
                if i < 0:  # an optional input left out
                    h.update(b"-")
                    continue
                t = sg.tensors[i]
                h.update(struct.pack("<i", t.type))
                if t.quantization is not None:
                    q = t.quantization
                    h.update(repr((q.scales, q.zero_points, q.quantized_dimension)).encode())
                buf = model.buffers[t.buffer] if t.buffer else None
                if buf is not None and buf.size and not buf.external:
                    h.update(hashlib.sha256(blob[buf.start : buf.start + buf.size]).digest())
    return h.hexdigest()
