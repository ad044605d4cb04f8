"""Samples on disk: the live Arrow IPC stream (one record batch per flush, append-only, a reader
stops cleanly at a torn final batch) and its compaction to Parquet when the run is finalised."""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import schema
from ..errors import RunError
from .durable import MAX_PENDING_BYTES, replace_atomically, storage_error, undo_append, write_all

if TYPE_CHECKING:
    import pyarrow as pa

#: Compression of the live Arrow stream's buffers (a batch per second: ~3.5 B per stored value
#: instead of ~19 uncompressed, benchmarks/storage.py) and of the finalised Parquet files.
STREAM_COMPRESSION = "zstd"
PARQUET_COMPRESSION = "zstd"
#: rows per row group of a finalised Parquet file (pyarrow's own default; readers scan by row group)
PARQUET_ROW_GROUP = 1 << 20


class _Spool:
    """An in-memory sink for pyarrow's stream writer: :class:`SampleStream` takes the encoded
    bytes out and writes them itself, so a refused write can be cut off again and retried."""

    closed = False

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._pos = 0

    def write(self, data: Any) -> int:
        b = bytes(data)
        self._chunks.append(b)
        self._pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


class SampleStream:
    """Append-only Arrow IPC stream of samples for one source (one record batch per ``append``).

    Each batch is encoded in memory (buffers compressed with :data:`STREAM_COMPRESSION`), then
    appended to the file with ``write`` and ``fsync``. When the disk refuses it (full, quota, file
    size limit), the partial bytes are cut off again, so the file stays a valid stream of whole
    batches; the batch is kept in memory (up to :data:`MAX_PENDING_BYTES`, then the oldest are
    dropped and counted in :attr:`dropped_rows`) and written before the next one, and
    :meth:`append` raises :class:`RunError` saying why.
    """

    def __init__(self, path: Path, metrics: list[str], *, compression: str | None = STREAM_COMPRESSION) -> None:
        import pyarrow as pa

        unknown = [m for m in metrics if m not in schema.METRICS]
        if unknown:
            raise RunError(f"unknown metric column(s) {unknown}; known: {sorted(schema.METRICS)}")
        self.path = path
        self.metrics = list(metrics)
        self._schema = pa.schema(
            [(schema.T, pa.float64()), (schema.DEVICE, pa.string())]
            + [(m, pa.float64()) for m in self.metrics]
        )
        self._spool = _Spool()
        self._writer = pa.ipc.new_stream(self._spool, self._schema,
                                         options=pa.ipc.IpcWriteOptions(compression=compression))
        self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=self._schema))  # the schema message
        header = self._spool.take()
        #: rows written to the file / rows given up on while the disk refused them
        self.rows = 0
        self.dropped_rows = 0
        self._pending: collections.deque[tuple[bytes, int]] = collections.deque()
        self._pending_bytes = 0
        self._closed = False
        self._header = header
        #: damage done to the file from outside while recording (deleted, truncated), one line each
        self.problems: list[str] = []
        self._base = path
        self._open_file(path)

    def _open_file(self, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as e:
            raise storage_error(path, e, "samples") from None
        try:
            write_all(self._fd, self._header)
        except OSError as e:
            undo_append(self._fd, getattr(e, "written", 0))
            os.close(self._fd)
            raise storage_error(path, e, "samples") from None
        self.path = path
        #: bytes this stream has put in its file (what the file's size must be)
        self._size = len(self._header)
        self._rows_in_file = 0

    def _check_file(self) -> None:
        """Notice the file deleted or truncated from outside (a cleanup script, a user): say what
        was lost in :attr:`problems` and go on in a new file beside it, so later samples are kept."""
        try:
            st = os.fstat(self._fd)
        except OSError:
            return
        if st.st_nlink > 0 and st.st_size >= self._size:
            return
        if st.st_nlink == 0:
            what = (f"{self.path.name} was deleted from outside wattprof during the run: the "
                    f"{self._rows_in_file} samples written to it are lost")
        else:
            what = (f"{self.path.name} was truncated from outside wattprof during the run ({self._size} to "
                    f"{st.st_size} bytes): of the {self._rows_in_file} samples written to it, those past the "
                    "cut are lost")
        os.close(self._fd)
        n = 2
        while (new := self._base.with_name(f"{self._base.stem}-r{n}{self._base.suffix}")).exists():
            n += 1
        self.problems.append(f"{what}; recording went on in {new.name}")
        self._open_file(new)

    @property
    def pending_rows(self) -> int:
        """Rows encoded but not yet on disk (the disk refused them so far)."""
        return sum(n for _, n in self._pending)

    def append(self, rows: list[dict]) -> None:
        """Write ``rows`` (dicts with ``t``, ``device`` and metric values) as one batch, durably.
        With no rows, retries what the disk refused before."""
        if rows:
            import pyarrow as pa

            cols: dict[str, list] = {schema.T: [], schema.DEVICE: []}
            for m in self.metrics:
                cols[m] = []
            for r in rows:
                cols[schema.T].append(float(r[schema.T]))
                cols[schema.DEVICE].append(str(r[schema.DEVICE]))
                for m in self.metrics:
                    v = r.get(m)
                    cols[m].append(None if v is None else float(v))
            batch = pa.record_batch([pa.array(cols[c.name], c.type) for c in self._schema], schema=self._schema)
            self._writer.write_batch(batch)
            data = self._spool.take()
            self._pending.append((data, len(rows)))
            self._pending_bytes += len(data)
        self._drain()

    def _drain(self) -> None:
        if not self._pending:
            return
        if self._closed:
            raise RunError(f"{self.path}: appended to after close")
        self._check_file()
        data = b"".join(d for d, _ in self._pending)
        try:
            write_all(self._fd, data)
        except OSError as e:
            undo_append(self._fd, getattr(e, "written", 0))
            while self._pending_bytes > MAX_PENDING_BYTES and len(self._pending) > 1:
                d, n = self._pending.popleft()
                self._pending_bytes -= len(d)
                self.dropped_rows += n
            raise storage_error(self.path, e, "samples") from None
        written = sum(n for _, n in self._pending)
        self.rows += written
        self._rows_in_file += written
        self._size += len(data)
        self._pending.clear()
        self._pending_bytes = 0
        try:
            os.fsync(self._fd)
        except OSError as e:  # the batches are in the file (whole); they may not be durable yet
            raise storage_error(self.path, e, "samples (fsync)") from None

    def close(self) -> None:
        """Write what is pending and the end-of-stream marker; rows the disk still refuses are
        counted in :attr:`dropped_rows` and a :class:`RunError` says so. Safe to call twice."""
        if self._closed:
            return
        try:
            self._check_file()
            self._drain()
        except RunError:
            self.dropped_rows += self.pending_rows
            self._pending.clear()
            raise
        finally:
            self._writer.close()
            eos = self._spool.take()
            try:  # the marker is optional: readers stop at EOF too
                write_all(self._fd, eos)
                os.fsync(self._fd)
            except OSError as e:
                undo_append(self._fd, getattr(e, "written", 0))
            self._closed = True
            os.close(self._fd)


def read_stream(path: Path) -> tuple[pa.Table | None, bool]:
    """Read the complete, valid batches of an Arrow stream; return (table, torn) where ``torn``
    says a partial or damaged batch (an interrupted write, a corrupted file) and everything after
    it was dropped. Never raises for damaged content; :class:`RunError` if the file is unreadable."""
    import pyarrow as pa

    batches = []
    torn = False
    try:
        f = pa.OSFile(str(path), "rb")
    except OSError as e:
        raise RunError(f"{path}: cannot read samples ({e.strerror or e})") from None
    with f:
        try:
            reader = pa.ipc.open_stream(f)
        except Exception:  # noqa: BLE001 - not even a whole schema message: nothing to read
            return None, path.stat().st_size > 0
        while True:
            try:
                batch = reader.read_next_batch()
                batch.validate(full=True)  # damaged offsets or lengths: stop before using them
            except StopIteration:
                break
            except Exception:  # noqa: BLE001 - any damage ends the readable part of the stream
                torn = True
                break
            batches.append(batch)
        try:
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except Exception:  # noqa: BLE001
            return None, True
    return table, torn



def write_parquet(table: pa.Table, final: Path) -> None:
    """Write ``table`` to ``final`` atomically (:func:`~wattprof.run.durable.replace_atomically`),
    sorted by device then time (what readers want, and runs of one device compress better).
    :class:`RunError` when the disk refuses it; nothing is left behind then."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    order = None
    if table.num_rows > 1:
        order = pc.sort_indices(table, [(schema.DEVICE, "ascending"), (schema.T, "ascending")]).to_numpy()
        if (order[1:] > order[:-1]).all():  # already in order (imports, merges): no sorted copy
            order = None

    def write(tmp: Path) -> None:
        if order is None:
            pq.write_table(table, tmp, compression=PARQUET_COMPRESSION, row_group_size=PARQUET_ROW_GROUP)
            return
        # the sorted table one row group at a time: memory is the table and one group, not two tables
        with pq.ParquetWriter(tmp, table.schema, compression=PARQUET_COMPRESSION) as w:
            for a in range(0, len(order), PARQUET_ROW_GROUP):
                w.write_table(table.take(order[a:a + PARQUET_ROW_GROUP]), row_group_size=PARQUET_ROW_GROUP)

    replace_atomically(final, write, "samples")


def compact(path: Path, *, errors: list[str] | None = None) -> None:
    """Turn each ``samples-*.arrows`` stream into ``samples-*.parquet`` (atomic rename, then delete).

    A stream whose Parquet file cannot be written stays as it is (readable); the problem is
    appended to ``errors``, or raised as :class:`RunError` when ``errors`` is None."""
    for stream in sorted(path.glob("samples-*.arrows")):
        table, torn = read_stream(stream)
        final = stream.with_suffix(".parquet")
        if table is not None and table.num_rows:
            try:
                write_parquet(table, final)
            except RunError as e:
                if errors is None:
                    raise
                errors.append(f"{e}; the samples stay in {stream.name}")
                continue
        if torn and errors is not None:
            errors.append(f"{stream.name}: a partly written or damaged chunk was dropped at compaction")
        stream.unlink()

