"""Files that hold secrets or personal data, created readable by their owner
only (0600) from the first byte.

`Path.write_text` followed by `chmod` leaves a moment at the umask's mode
(0644 usually) when another local user can open the file and keep the
descriptor. Here the mode is given to `open(2)` itself, on a fresh temporary
name that is then renamed into place, so no such moment exists, a reader
never sees a half-written file, and a symlink planted at the temporary name
is refused (O_EXCL). It lives in db/, the lowest layer allowed to do I/O, so
the database session, the audit chain, the activities, runtime/ and the
gateway can all use it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

PRIVATE_MODE = 0o600


def _open_private(path: Path, flags: int) -> int:
    descriptor = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), PRIVATE_MODE)
    # A umask can only take bits away from 0600, never add any; fchmod makes
    # sure of 0600 exactly (an owner without read would lock itself out).
    os.fchmod(descriptor, PRIVATE_MODE)
    return descriptor


@contextmanager
def _staged(path: str | os.PathLike[str], data: str | bytes) -> Iterator[tuple[Path, Path]]:
    """`data` written and synced to a new 0600 temporary file beside `path`;
    yields (temporary, target), and removes the temporary file afterwards
    if it is still there."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    descriptor = _open_private(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        yield temporary, target
    finally:
        temporary.unlink(missing_ok=True)


def write_private(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write `data` to `path` whole, as a new 0600 file renamed into place
    (replacing any file there, whatever its mode). Returns the path."""
    with _staged(path, data) as (temporary, target):
        os.replace(temporary, target)
    return target


def create_private_once(path: str | os.PathLike[str], data: str | bytes) -> bool:
    """Create `path` as a 0600 file holding `data` unless it exists already
    (two processes racing both end up reading the same content: the second
    link does not happen). True when this call created it."""
    with _staged(path, data) as (temporary, target):
        try:
            os.link(temporary, target)  # fails when the target exists: the first writer wins
        except FileExistsError:
            return False
        return True


def open_private_append(path: str | os.PathLike[str]) -> IO[str]:
    """A text file opened for appending, created 0600 if it is missing (an
    existing file keeps its content and is brought to 0600)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor = _open_private(target, os.O_CREAT | os.O_APPEND | os.O_WRONLY)
    return os.fdopen(descriptor, "a", encoding="utf-8")


def touch_private(path: str | os.PathLike[str]) -> Path:
    """Create `path` empty at 0600 if it is missing; an existing file keeps its
    content and is brought to 0600 (e.g. a SQLite database before SQLAlchemy
    opens it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.close(_open_private(target, os.O_CREAT | os.O_WRONLY))
    return target
