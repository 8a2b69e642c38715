"""Who owns a partial download: process liveness (zombies count as dead) and the note kept
beside a partial file for a later resume."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["STALE_FOREIGN_TEMP_S", "partial_info", "pid_alive"]

STALE_FOREIGN_TEMP_S = 24 * 3600  # temp files of other hosts: left alone for a day


def pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there; trust the age rule
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A process that has exited but not been reaped by its parent yet (Linux /proc).

    Its PID still answers ``kill(pid, 0)``, but it holds no locks (the kernel released its
    flock at exit) and writes nothing more: its partial download is a leftover to adopt. Without
    this, a waiter that takes the lock in the moment between a SIGKILL and the parent's
    ``wait()`` downloaded the whole file again instead of resuming.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    # "pid (comm) state ...": comm may contain spaces or parentheses, so split after the last ")"
    fields = stat.rpartition(b")")[2].split()
    return bool(fields) and fields[0] == b"Z"


def partial_info(temp: Path) -> Path:
    return temp.with_name(temp.name + ".json")
