"""The parties of a simulation as separate ``secure-mor`` processes, each logging to its own file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


class ProcessGroup:
    """Starts ``python -m secure_mor …`` commands and stops every one of them on ``stop_all``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``secure-mor ARGS`` as party ``name``; its output goes to ``logs/<name>.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "secure_mor", *args], stdout=log, stderr=subprocess.STDOUT
            )
        self.started[name] = process
        return process

    def tail(self, name: str, lines: int = 20) -> str:
        """The last lines of a party's log."""
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self, grace: float = 15.0) -> None:
        """SIGTERM every running party, then SIGKILL what has not stopped after ``grace`` seconds."""
        for process in self.started.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started.values():
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
