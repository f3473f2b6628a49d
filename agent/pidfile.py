"""The agent's PID file, so `edgestream reload -c FILE` can find the running daemon.

It lives in the data folder (the only place a sandboxed service may write) and names
the process that holds the queue open. A stale file left by a crash names a process
that is gone, or one that is not an edgestream agent; `running_pid` checks both.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PID_FILE_NAME = "agent.pid"


def pid_path(data_dir: str | Path) -> Path:
    """Where the agent of this data folder writes its PID."""
    return Path(data_dir) / PID_FILE_NAME


def write_pid(data_dir: str | Path) -> Path:
    """Record this process as the agent of `data_dir` (atomically replaced)."""
    path = pid_path(data_dir)
    temporary = path.with_suffix(".pid.tmp")
    temporary.write_text(f"{os.getpid()}\n", encoding="ascii")
    temporary.replace(path)
    return path


def remove_pid(data_dir: str | Path) -> None:
    """Forget the PID at a clean exit, if it is still ours."""
    path = pid_path(data_dir)
    if read_pid(path) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_pid(path: Path) -> int | None:
    """The PID in the file, or None when there is no readable number."""
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def running_pid(data_dir: str | Path) -> int | None:
    """The PID of the live edgestream process of `data_dir`, or None."""
    pid = read_pid(pid_path(data_dir))
    if pid is None or pid <= 0:
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    words = command.split(b"\0")
    daemon = any(w.endswith((b"edgestream", b"agent.cli.main")) for w in words) and b"run" in words
    return pid if daemon else None
