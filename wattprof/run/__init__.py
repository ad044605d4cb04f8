"""A Run is a directory on disk: written durably while recording, readable even if never finished.

Layout (format 1)::

    RUN/
      meta.json                      id, name, tags, command, host, devices, sources, status ...
                                     replaced atomically (write, fsync, rename)
      samples-<source>.arrows        Arrow IPC stream, one record batch per flush (append-only);
                                     a reader stops cleanly at a torn final batch
      samples-<source>.parquet       the same samples compacted when the run is finalised
      steps-<rank>-<pid>.jsonl       one step per line, one file per writing process
      events-<pid>.jsonl             collector errors, restarts, markers: one JSON object per line

Each writer (a recorder's collector, an import) owns its own files, so processes and ranks never
interleave half-written lines. Readers return pandas DataFrames.

One job per module, each importing only those above it in this list:

- :mod:`.durable`  atomic replace / exclusive create / whole appends; storage errors
- :mod:`.jsonl`    append-only JSON lines (steps, events)
- :mod:`.stream`   the samples' Arrow stream, its reader, compaction to Parquet
- :mod:`.meta`     ``meta.json``: fields, types, ranges and defaults (once), reading and checking
- :mod:`.writer`   :class:`RunWriter`, :func:`default_run_dir`
- :mod:`.reader`   :class:`Run`
"""

from __future__ import annotations

from .durable import (
    MAX_PENDING_BYTES,
    replace_atomically,
    storage_error,
    write_bytes_atomic,
    write_json_atomic,
    write_json_exclusive,
    write_text_atomic,
)
from .jsonl import JsonlAppender
from .meta import FORMAT, MAX_UNIX_TIME, META, META_FIELDS, META_RANGES, REDACTED, read_meta, redact_command
from .reader import Run, clean_samples
from .stream import PARQUET_COMPRESSION, STREAM_COMPRESSION, SampleStream, compact, read_stream, write_parquet
from .writer import RESERVE, RESERVE_BYTES, RunWriter, default_run_dir, safe_name

__all__ = [
    "FORMAT", "META", "META_FIELDS", "META_RANGES", "MAX_UNIX_TIME", "REDACTED", "MAX_PENDING_BYTES",
    "STREAM_COMPRESSION", "PARQUET_COMPRESSION", "RESERVE", "RESERVE_BYTES",
    "Run", "RunWriter", "SampleStream", "JsonlAppender",
    "compact", "write_parquet", "read_stream", "clean_samples", "read_meta", "redact_command",
    "default_run_dir", "safe_name", "storage_error", "replace_atomically", "write_bytes_atomic",
    "write_text_atomic", "write_json_atomic", "write_json_exclusive",
]
