"""Waiting for something another process or the workflow does: `eventually`
polls a check in real time (the dev-server tests); `poll_until` polls an async
fetch with a pause of the caller's between tries, such as a step of the
time-skipping server's clock or a short real-time sleep."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any


def eventually(check, timeout: float = 20.0):
    """check()'s first truthy result within `timeout` seconds, tried every half
    second. Until the deadline a failing assertion, a CLI call that failed or
    output that is not JSON yet counts as "not yet": a process under test may
    still be starting or settling."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (AssertionError, subprocess.CalledProcessError, json.JSONDecodeError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.5)


async def poll_until(
    fetch: Callable[[], Awaitable[Any]],
    condition: Callable[[Any], Any],
    pause: Callable[[], Awaitable[Any]],
    tries: int,
    failure: Callable[[Any], str],
) -> Any:
    """The first answer of fetch() that meets `condition`, in at most `tries`
    fetches with `await pause()` after each that does not; else an
    AssertionError saying failure(last answer).

    The pause is the caller's because what it must be differs: on the
    time-skipping server a test moves the clock (real time would not make the
    workflow's timers fire), while a test that must not move the clock sleeps
    in real time."""
    answer = None
    for _ in range(tries):
        answer = await fetch()
        if condition(answer):
            return answer
        await pause()
    raise AssertionError(failure(answer))
