"""Which process wrote a record, and whether it is still alive.

Records that say "in progress" (an alias move's intent, an MLflow run, a Prefect flow
run) carry a process token ``<host>:<pid>`` (the form Prefect uses for
``infrastructure_pid``); a later command on the same host can tell that the writer is
gone (killed, crashed) and finish or mark what it left behind. A token of another host
is never judged: that process may be alive.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any


def process_token() -> str:
    """This process, as ``<host>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def token_gone(token: str | None) -> bool:
    """True when ``token`` names a process of this host that no longer runs; False when it
    runs, belongs to another host or cannot be read."""
    host, sep, pid = (token or "").rpartition(":")
    if not sep or host != socket.gethostname() or not pid.isdigit():
        return False
    return not pid_alive(int(pid))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie counts as gone on Linux)."""
    if pid <= 0 or os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows
        return pid > 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:  # Linux: a killed child not yet reaped
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@contextmanager
def live_record(path: Path, info: dict[str, Any]) -> Iterator[None]:
    """``info`` and this process's ``pid`` in the JSON file ``path`` while the block runs
    (a running server naming itself); removed after, unless another process took it over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**info, "pid": os.getpid()}))
    try:
        yield
    finally:
        with suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


def read_live_record(path: Path) -> dict[str, Any] | None:
    """The record ``live_record`` wrote at ``path`` while its process still runs; None when
    there is none, and a record left by a killed process is removed."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not pid_alive(int(info.get("pid", 0))):
        with suppress(OSError):
            path.unlink()
        return None
    return info
