"""Files that hold secrets or personal data, 0600 from creation: see
db/private_files.py (it sits in db/, the lowest layer that does I/O, so the
database session and the audit chain can use it too; this name is for the
layers above)."""

from __future__ import annotations

from db.private_files import PRIVATE_MODE, create_private_once, open_private_append, touch_private, write_private

__all__ = ["PRIVATE_MODE", "create_private_once", "open_private_append", "touch_private", "write_private"]
