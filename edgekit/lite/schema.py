"""A bounds-checked reader for the TFLite flatbuffer: the parts edgekit looks at.

The generated schema module (`ai_edge_litert.schema_py_generated`) trusts its input:
a crafted offset can make it read from the end of the buffer (Python's negative
indexing) or loop over a vector that claims two billion elements. This reader checks
every table, vtable, offset and vector against the file before it reads, and turns
each problem into a `StructureError` that says where it was found. It returns plain
Python objects (tuples and small frozen dataclasses), so `validate` and `inspect`
share one careful parse and never touch the bytes again except through a checked span.

Field slots follow `schema.fbs` (the vtable offsets in `schema_py_generated`).
"""

from __future__ import annotations

import dataclasses
import struct

# TensorType -> bytes per element (None: variable size or packed; see `packed_bits`).
TYPE_NAMES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
    6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128",
    12: "uint64", 13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4",
    18: "bfloat16", 19: "int2", 20: "uint4", 21: "float8_e4m3fn", 22: "float8_e5m2",
}  # fmt: skip
ITEM_SIZE = {
    0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8,
    15: 4, 16: 2, 18: 2, 21: 1, 22: 1,
}  # fmt: skip
PACKED_BITS = {17: 4, 19: 2, 20: 4}  # int4, int2, uint4: several values per byte
ZERO_POINT_RANGE = {
    3: (0, 255), 9: (-128, 127), 7: (-32768, 32767), 16: (0, 65535),
    2: (-(2**31), 2**31 - 1), 4: (-(2**63), 2**63 - 1), 17: (-8, 7), 20: (0, 15), 19: (-2, 1),
}  # fmt: skip

# Builtin options that name other subgraphs: union type -> slots holding subgraph indices.
_SUBGRAPH_OPTIONS = {
    92: (4, 6),  # IfOptions: then, else
    93: (4, 6),  # WhileOptions: cond, body
    103: (4,),  # CallOnceOptions: init
}
_SUBGRAPH_OPTIONS2 = {
    15: (4, 6),  # StablehloWhileOptions: cond, body
}

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")


class StructureError(Exception):
    """The bytes are not a well-formed TFLite flatbuffer; `where` says what was being read."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


@dataclasses.dataclass(frozen=True)
class Quantization:
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int
    min: tuple[float, ...]
    max: tuple[float, ...]
    details_type: int


@dataclasses.dataclass(frozen=True)
class DimMetadata:
    format: int  # 0 dense, 1 sparse CSR
    dense_size: int
    segments: tuple[int, ...]
    indices: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Sparsity:
    traversal_order: tuple[int, ...]
    block_map: tuple[int, ...]
    dim_metadata: tuple[DimMetadata, ...]


@dataclasses.dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    type: int
    buffer: int
    is_variable: bool
    quantization: Quantization | None
    sparsity: Sparsity | None

    @property
    def dtype(self) -> str:
        return TYPE_NAMES.get(self.type, f"type{self.type}")


@dataclasses.dataclass(frozen=True)
class Operator:
    opcode_index: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...]
    builtin_options_type: int
    subgraph_refs: tuple[int, ...]
    custom_options_size: int


@dataclasses.dataclass(frozen=True)
class Subgraph:
    name: str
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[Operator, ...]


@dataclasses.dataclass(frozen=True)
class OperatorCode:
    builtin_code: int
    custom_code: str | None
    version: int


@dataclasses.dataclass(frozen=True)
class Buffer:
    start: int  # where the data is in the file; (0, 0) for no data
    size: int
    external: bool  # stored by offset/size after the flatbuffer (models > 2 GB)


@dataclasses.dataclass(frozen=True)
class Signature:
    key: str
    subgraph_index: int
    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True)
class Model:
    version: int
    description: str
    operator_codes: tuple[OperatorCode, ...]
    subgraphs: tuple[Subgraph, ...]
    buffers: tuple[Buffer, ...]
    metadata: tuple[tuple[str, int], ...]
    signatures: tuple[Signature, ...]
    file_size: int


class _Table:
    """One flatbuffer table whose vtable has been checked against the file."""

    __slots__ = ("r", "pos", "vt", "vt_size", "tbl_size", "where")

    def __init__(self, r: _Reader, pos: int, where: str) -> None:
        self.r = r
        self.pos = pos
        self.where = where
        r.need(pos, 4, where, "table")
        vt = pos - _I32.unpack_from(r.data, pos)[0]
        if vt < 0 or vt % 2:
            raise StructureError(f"vtable offset points outside the file (to {vt})", where)
        r.need(vt, 4, where, "vtable header")
        vt_size, tbl_size = _U16.unpack_from(r.data, vt)[0], _U16.unpack_from(r.data, vt + 2)[0]
        if vt_size < 4 or vt_size % 2:
            raise StructureError(f"vtable size {vt_size} is invalid", where)
        r.need(vt, vt_size, where, "vtable")
        if tbl_size < 4:
            raise StructureError(f"table size {tbl_size} is invalid", where)
        r.need(pos, tbl_size, where, "table body")
        self.vt, self.vt_size, self.tbl_size = vt, vt_size, tbl_size

    def field(self, slot: int, size: int) -> int | None:
        if slot >= self.vt_size:
            return None
        off = _U16.unpack_from(self.r.data, self.vt + slot)[0]
        if off == 0:
            return None
        if off + size > self.tbl_size:
            raise StructureError(f"field at slot {slot} lies outside its table", self.where)
        return self.pos + off

    def scalar(self, slot: int, fmt: struct.Struct, default: int | float) -> int | float:
        p = self.field(slot, fmt.size)
        return default if p is None else fmt.unpack_from(self.r.data, p)[0]

    def _deref(self, slot: int, what: str) -> int | None:
        p = self.field(slot, 4)
        if p is None:
            return None
        target = p + _U32.unpack_from(self.r.data, p)[0]
        self.r.need(target, 4, self.where, f"the {what} it points to")
        return target

    def table(self, slot: int, what: str) -> _Table | None:
        target = self._deref(slot, what)
        return None if target is None else _Table(self.r, target, f"{self.where}, {what}")

    def vector(self, slot: int, elem_size: int, what: str) -> tuple[int, int] | None:
        """Returns (start of elements, count), checked to lie inside the file."""
        target = self._deref(slot, what)
        if target is None:
            return None
        if target % 4:
            raise StructureError(f"{what} vector is not 4-byte aligned", self.where)
        count = _U32.unpack_from(self.r.data, target)[0]
        self.r.need(target + 4, count * elem_size, self.where, f"{what} ({count} elements)")
        return target + 4, count

    def numbers(self, slot: int, code: str, what: str) -> tuple:
        size = struct.calcsize("<" + code)
        span = self.vector(slot, size, what)
        if span is None:
            return ()
        start, count = span
        return struct.unpack_from(f"<{count}{code}", self.r.data, start)

    def string(self, slot: int, what: str) -> str | None:
        span = self.vector(slot, 1, what)
        if span is None:
            return None
        start, count = span
        return self.r.data[start : start + count].decode("utf-8", errors="replace")

    def tables(self, slot: int, what: str, *, limit: int) -> list[_Table]:
        span = self.vector(slot, 4, what)
        if span is None:
            return []
        start, count = span
        if count > limit:
            raise StructureError(f"{what}: {count} entries exceed the limit of {limit}", self.where)
        out = []
        data = self.r.data
        for i in range(count):
            p = start + 4 * i
            target = p + _U32.unpack_from(data, p)[0]
            out.append(_Table(self.r, target, f"{self.where}, {what} {i}"))
        return out


class _Reader:
    __slots__ = ("data", "n")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)

    def need(self, pos: int, size: int, where: str, what: str) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            raise StructureError(
                f"{what} at byte {pos} (+{size} bytes) lies outside the {self.n}-byte file", where
            )


# Generous limits that no real model reaches; they bound the time a crafted file costs.
MAX_SUBGRAPHS = 10_000
MAX_ENTRIES = 5_000_000


def parse(data: bytes) -> Model:
    """Parses the model's structure, checking every offset; raises `StructureError`."""
    r = _Reader(data)
    r.need(0, 8, "file header", "root offset and identifier")
    root = _Table(r, _U32.unpack_from(data, 0)[0], "model")
    codes = []
    for t in root.tables(6, "operator_code", limit=MAX_ENTRIES):
        deprecated = int(t.scalar(4, struct.Struct("<b"), 0))
        builtin = int(t.scalar(10, _I32, 0))
        codes.append(
            OperatorCode(
                builtin_code=max(deprecated, builtin),
                custom_code=t.string(6, "custom_code"),
                version=int(t.scalar(8, _I32, 1)),
            )
        )
    buffers = []
    for t in root.tables(12, "buffer", limit=MAX_ENTRIES):
        span = t.vector(4, 1, "data")
        offset = int(t.scalar(6, _U64, 0))
        size = int(t.scalar(8, _U64, 0))
        if offset > 1:
            r.need(offset, size, t.where, "external buffer data")
            buffers.append(Buffer(start=offset, size=size, external=True))
        elif span is not None:
            buffers.append(Buffer(start=span[0], size=span[1], external=False))
        else:
            buffers.append(Buffer(start=0, size=0, external=False))
    subgraphs = [
        _parse_subgraph(t, i) for i, t in enumerate(root.tables(8, "subgraph", limit=MAX_SUBGRAPHS))
    ]
    metadata = []
    for t in root.tables(16, "metadata", limit=MAX_ENTRIES):
        metadata.append((t.string(4, "name") or "", int(t.scalar(6, _U32, 0))))
    signatures = []
    for t in root.tables(18, "signature_def", limit=MAX_ENTRIES):
        maps = []
        for slot, what in ((4, "input"), (6, "output")):
            maps.append(
                tuple(
                    (m.string(4, "name") or "", int(m.scalar(6, _U32, 0)))
                    for m in t.tables(slot, what, limit=MAX_ENTRIES)
                )
            )
        signatures.append(
            Signature(
                key=t.string(8, "signature_key") or "",
                subgraph_index=int(t.scalar(12, _U32, 0)),
                inputs=maps[0],
                outputs=maps[1],
            )
        )
    return Model(
        version=int(root.scalar(4, _U32, 0)),
        description=root.string(10, "description") or "",
        operator_codes=tuple(codes),
        subgraphs=tuple(subgraphs),
        buffers=tuple(buffers),
        metadata=tuple(metadata),
        signatures=tuple(signatures),
        file_size=len(data),
    )


def _parse_subgraph(t: _Table, index: int) -> Subgraph:
    tensors = tuple(_parse_tensor(x) for x in t.tables(4, "tensor", limit=MAX_ENTRIES))
    ops = []
    for o in t.tables(10, "operator", limit=MAX_ENTRIES):
        refs: list[int] = []
        opt_type = int(o.scalar(10, _U8, 0))
        if opt_type in _SUBGRAPH_OPTIONS:
            opts = o.table(12, "builtin_options")
            if opts is not None:
                refs.extend(int(opts.scalar(s, _I32, 0)) for s in _SUBGRAPH_OPTIONS[opt_type])
        opt2_type = int(o.scalar(26, _U8, 0))
        if opt2_type in _SUBGRAPH_OPTIONS2:
            opts = o.table(28, "builtin_options_2")
            if opts is not None:
                refs.extend(int(opts.scalar(s, _I32, 0)) for s in _SUBGRAPH_OPTIONS2[opt2_type])
        custom = o.vector(14, 1, "custom_options")
        ops.append(
            Operator(
                opcode_index=int(o.scalar(4, _U32, 0)),
                inputs=o.numbers(6, "i", "inputs"),
                outputs=o.numbers(8, "i", "outputs"),
                intermediates=o.numbers(20, "i", "intermediates"),
                builtin_options_type=opt_type,
                subgraph_refs=tuple(refs),
                custom_options_size=0 if custom is None else custom[1],
            )
        )
    return Subgraph(
        name=t.string(12, "name") or "",
        tensors=tensors,
        inputs=t.numbers(6, "i", "inputs"),
        outputs=t.numbers(8, "i", "outputs"),
        operators=tuple(ops),
    )


def _parse_tensor(t: _Table) -> Tensor:
    quant = None
    q = t.table(12, "quantization")
    if q is not None:
        quant = Quantization(
            min=q.numbers(4, "f", "min"),
            max=q.numbers(6, "f", "max"),
            scales=q.numbers(8, "f", "scale"),
            zero_points=q.numbers(10, "q", "zero_point"),
            details_type=int(q.scalar(12, _U8, 0)),
            quantized_dimension=int(q.scalar(16, _I32, 0)),
        )
    sparsity = None
    s = t.table(16, "sparsity")
    if s is not None:
        dims = []
        for d in s.tables(8, "dim_metadata", limit=64):
            dims.append(
                DimMetadata(
                    format=int(d.scalar(4, struct.Struct("<b"), 0)),
                    dense_size=int(d.scalar(6, _I32, 0)),
                    segments=_index_vector(d, 8, 10, "array_segments"),
                    indices=_index_vector(d, 12, 14, "array_indices"),
                )
            )
        sparsity = Sparsity(
            traversal_order=s.numbers(4, "i", "traversal_order"),
            block_map=s.numbers(6, "i", "block_map"),
            dim_metadata=tuple(dims),
        )
    sig = t.numbers(18, "i", "shape_signature")
    return Tensor(
        name=t.string(10, "name") or "",
        shape=t.numbers(4, "i", "shape"),
        shape_signature=sig if sig else None,
        type=int(t.scalar(6, struct.Struct("<b"), 0)),
        buffer=int(t.scalar(8, _U32, 0)),
        is_variable=bool(t.scalar(14, _U8, 0)),
        quantization=quant,
        sparsity=sparsity,
    )


def _index_vector(d: _Table, type_slot: int, value_slot: int, what: str) -> tuple[int, ...]:
    kind = int(d.scalar(type_slot, _U8, 0))
    code = {1: "i", 2: "H", 3: "B"}.get(kind)
    if code is None:
        return ()
    holder = d.table(value_slot, what)
    return () if holder is None else holder.numbers(4, code, what)
