"""The benchmark's progress lines, stamped with the seconds since it began."""

from __future__ import annotations

import time

_BEGAN = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _BEGAN:5.0f} s] {text}", flush=True)
