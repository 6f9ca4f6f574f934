"""Atomic file writes: a file is whole or absent, never torn.

Each file goes to a temporary beside it (same filesystem), is fsynced and renamed into place. A failed write
removes its temporaries and leaves the previous version of every file; the error names the file, and a full
disk (or quota) says "no space left on <file>". Files are created like any other file of the user's, with the
mode the umask allows (0644 under the usual umask 022).
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], None]
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class FileWriteError(OSError):
    """A file could not be written; the message names it and why (e.g. "no space left on <file>")."""

    def __str__(self) -> str:
        return str(self.strerror)


def named_write_error(error: OSError, path: Path) -> FileWriteError:
    """`error` from writing `path` as a FileWriteError naming the file ("no space left on <path>" for a full disk
    or quota, else "cannot write <path>: <reason>")."""
    reason = (
        f"no space left on {path}" if error.errno in NO_SPACE else f"cannot write {path}: {error.strerror or error}"
    )
    return FileWriteError(error.errno, reason, str(path))


def _open_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside `path`, created with mode 0666 minus the umask (mkstemp would give 0600)."""
    while True:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


def write_files_atomic(writers: Mapping[Path | str, Writer]) -> None:
    """Write every file with its writer (given a binary stream) to a temporary, and rename the temporaries
    into place only once all are complete, so a failed write (a full disk, an exception in a writer) replaces
    none of the files and leaves no temporary. Raises FileWriteError naming the file the filesystem refused."""
    temporaries: list[tuple[Path, Path]] = []
    current: Path | None = None
    try:
        for target, write in writers.items():
            current = Path(target)
            current.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = _open_temporary(current)
            temporaries.append((current, temporary))
            with os.fdopen(handle, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
        for current, temporary in temporaries:
            os.replace(temporary, current)
    except BaseException as error:
        for _, temporary in temporaries:
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, FileWriteError) and current is not None:
            raise named_write_error(error, current) from error
        raise


def write_file_atomic(path: Path | str, write: Writer) -> None:
    """Write one file atomically (see write_files_atomic)."""
    write_files_atomic({path: write})


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    write_file_atomic(path, lambda stream: stream.write(data))
