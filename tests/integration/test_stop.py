"""Stopping the local stack as `make dev` is stopped: Ctrl+C (SIGINT) or SIGTERM to its whole process group, which
every child (moto's process, the function containers) receives too. One line, and nothing left running."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.conftest import start_stack

pytestmark = pytest.mark.integration


def running_in_group(pgid: int) -> list[str]:
    """The command lines of the group's processes still running (a zombie has ended: only its exit status is left
    for its parent, or init, to collect)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while being read
            continue
        if int(group) == pgid and state != "Z":
            left.append(command)
    return left


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_process_group_stops_the_stack_with_one_line_and_nothing_left(signum):
    running = start_stack()  # in a session of its own: its process group is its pid
    pgid = running.process.pid
    try:
        time.sleep(1)  # the SQS pollers are in their long polls, as on an idle `make dev`
        printed = len(running.output)
        os.killpg(pgid, signum)
        started = time.monotonic()
        running.process.wait(timeout=30)
        stopped_in = time.monotonic() - started
        while running_in_group(pgid) and time.monotonic() < started + 15:
            time.sleep(0.1)
        left = running_in_group(pgid)
        time.sleep(0.5)  # the last children closed the output pipe: its reader takes what is left
        after = "".join(running.output[printed:])
    finally:
        if running_in_group(pgid):
            os.killpg(pgid, signal.SIGKILL)
    assert stopped_in < 15
    assert after.splitlines() == ["Stopped."], after
    assert left == []
    assert running.process.returncode == 0
