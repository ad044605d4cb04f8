"""Durable file writes, the one home of the rule: a file is replaced atomically (written under a
hidden temporary name beside it, fsynced, renamed over it), created exclusively (written, fsynced,
hard-linked), or appended to whole (``write`` until done, cut off again when the disk refuses).

New files are created with mode 0666 so that the kernel applies the process umask: no ``os.umask``
round trip, which would briefly set a umask of 0 for every thread of the process. A disk that
refuses a write (full, quota, file size limit) becomes a :class:`RunError` saying what could not be
written where and why; nothing half-written is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import RunError

#: Bytes of encoded samples (or JSON lines) a writer keeps in memory while the disk refuses them
#: (full, quota, file size limit); beyond this the oldest are dropped (and counted).
MAX_PENDING_BYTES = 64 * 2**20

_STORAGE_REASONS = {
    errno.ENOSPC: "no space left on the device (ENOSPC)",
    errno.EFBIG: "the file size limit was reached (EFBIG)",
    errno.EDQUOT: "the disk quota is exceeded (EDQUOT)",
}


def storage_error(path: Path | str, e: OSError, what: str) -> RunError:
    """A RunError that says what could not be written where, and why (disk full, size limit...)."""
    reason = _STORAGE_REASONS.get(e.errno or 0, e.strerror or str(e))
    err = RunError(f"{path}: cannot write {what}: {reason}")
    err.errno = e.errno  # type: ignore[attr-defined]
    return err


def temporary_name(final: Path) -> Path:
    """The hidden temporary file beside ``final`` that an atomic write goes through
    (``.<name>.<random>.tmp``: what ``wattprof repair`` recognises as a leftover)."""
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")


def is_temporary(path: Path) -> bool:
    """A leftover of an interrupted atomic write (see :func:`temporary_name`)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def create_new(path: Path) -> int:
    """Open a new file for writing (``O_EXCL``, mode 0666 under the umask); returns its descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(final: Path, write: Callable[[Path], None], what: str) -> None:
    """Replace ``final`` with what ``write(tmp)`` puts in a new file ``tmp``: the file is fsynced
    and renamed over ``final``, so a reader sees the old content or the new, never a part.
    ``write`` must create ``tmp`` itself (:func:`create_new` for a umask-respecting mode).
    :class:`RunError` (naming ``what``) when the disk refuses it; the temporary file is removed."""
    tmp = temporary_name(final)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, final)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise storage_error(final, e, what) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes, what: str = "file") -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`replace_atomically`)."""

    def write(tmp: Path) -> None:
        fd = create_new(tmp)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)

    replace_atomically(path, write, what)


def write_text_atomic(path: Path, text: str, what: str = "file") -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically (see :func:`replace_atomically`)."""
    write_bytes_atomic(path, text.encode("utf-8"), what)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n").encode("utf-8")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON: write a temporary file, fsync, rename.
    Raises :class:`RunError` when the file cannot be written (disk full, ...)."""
    write_bytes_atomic(path, _json_bytes(obj), "JSON")


def write_json_exclusive(path: Path, obj: Any) -> None:
    """Create ``path`` with ``obj`` as JSON, atomically and only if it does not exist: the file is
    written and fsynced under a temporary name, then hard-linked to ``path`` (``link(2)`` fails
    when ``path`` exists, so of two writers racing for it exactly one wins). :class:`RunError`
    when ``path`` exists or cannot be written."""
    tmp = temporary_name(path)
    try:
        fd = create_new(tmp)
        try:
            write_all(fd, _json_bytes(obj))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    except FileExistsError:
        raise RunError(f"{path.parent} already holds a run ({path.name} exists); choose another --out") from None
    except OSError as e:
        raise storage_error(path, e, "JSON") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_all(fd: int, data: bytes | memoryview) -> int:
    """``os.write`` until all of ``data`` is written; returns the byte count. On an error the
    bytes already written are reported in the exception's ``written`` attribute."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        try:
            n = os.write(fd, view[done:])
        except OSError as e:
            e.written = done  # type: ignore[attr-defined]
            raise
        if n == 0:  # pragma: no cover - write(2) returning 0 for a regular file
            raise OSError(errno.EIO, "write returned 0")
        done += n
    return done


def undo_append(fd: int, written: int) -> None:
    """Cut the ``written`` bytes of a failed append off the end of the file (best effort)."""
    if written:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, os.fstat(fd).st_size - written)
