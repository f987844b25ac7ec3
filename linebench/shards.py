"""A shard's bytes: rows (or an Arrow table) -> parquet, with the settings every linebench shard is
written with. Pure functions of their input: the same rows give the same bytes on every machine
(the official release checksums rely on it)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import signals_held

ROW_GROUP_SIZE = 100  # small row groups keep streaming and the Hub viewer light for image rows
NO_STATISTICS = ("image", "geometry", "params")  # generated rows: columns whose min/max say nothing


def _column(rows: list[dict[str, Any]], name: str, typ: pa.DataType) -> pa.Array:
    if isinstance(typ, pa.ExtensionType):  # Array2D: nested lists over one flat float32 buffer
        arr = np.stack([r[name] for r in rows]).astype(np.float32, copy=False)  # [B, R, C]
        b, r, c = arr.shape
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, b * r * c + 1, c, dtype=np.int32)), pa.array(arr.ravel()))
        outer = pa.ListArray.from_arrays(pa.array(np.arange(0, b * r + 1, r, dtype=np.int32)), inner)
        return pa.ExtensionArray.from_storage(typ, outer)
    if pa.types.is_struct(typ):  # Image: {bytes, path}
        return pa.StructArray.from_arrays(
            [pa.array([r[name] for r in rows], pa.binary()), pa.nulls(len(rows), pa.string())], names=["bytes", "path"]
        )
    return pa.array([r[name] for r in rows], typ)


def encode_table(table: pa.Table, image_column: str = "image", statistics: Sequence[str] | None = None) -> bytes:
    """The parquet bytes of one shard: row groups of ROW_GROUP_SIZE, images stored as they are
    (PNG is compressed already), every other column zstd; min/max statistics for `statistics`
    (None: every column)."""
    sink = pa.BufferOutputStream()
    kwargs = {} if statistics is None else {"write_statistics": list(statistics)}
    with signals_held():  # a Ctrl-C or kill lands after the write, not inside pyarrow's callbacks
        pq.write_table(
            table,
            sink,
            row_group_size=ROW_GROUP_SIZE,
            compression={f.name: ("none" if f.name == image_column else "zstd") for f in table.schema},
            **kwargs,
        )
    return sink.getvalue().to_pybytes()


def encode_shard(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    """The parquet bytes of one shard of generated rows (dicts, as `samples.RowMaker` makes them)."""
    with signals_held():  # as in encode_table: building the extension columns calls back into Python
        table = pa.Table.from_arrays([_column(rows, f.name, f.type) for f in schema], schema=schema)
    return encode_table(table, "image", [f.name for f in schema if f.name not in NO_STATISTICS])
