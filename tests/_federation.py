"""Helpers for tests that run the federation as separate ``secure-mor`` processes on loopback.

Shared by the integration, fault and load tests: the CLI runner, reading a run's ``secure_steps.csv``,
pointing a kit at fresh loopback ports and starting the key holder and clients. The trained deployment
itself is the session fixture ``deployment`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from secure_mor.simulate.processes import ProcessGroup
from secure_mor.simulate.runner import free_port

CLI = [sys.executable, "-m", "secure_mor"]
CLIENTS = ("color", "shape", "yesno")
T = TypeVar("T")


def update_toml(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    """Merge ``tables`` into the TOML file at ``path`` (what an operator editing a kit's config does)."""
    document = tomllib.loads(path.read_text())
    for table, values in tables.items():
        document.setdefault(table, {}).update(values)
    path.write_text(tomli_w.dumps(document))


def steps_of(run: Path) -> list[dict[str, str]]:
    """The rows of a run's ``secure_steps.csv`` (none before the first step)."""
    path = run / "secure_steps.csv"
    if not path.exists():
        return []
    with path.open() as file:
        return list(csv.DictReader(file))


def run_cli(*args: str, timeout: float = 300) -> str:
    """Run ``secure-mor ARGS`` to completion; fail the test with its output if it exits non-zero."""
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def poll(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``condition()`` until it returns a truthy value (returned) or ``timeout`` seconds pass (fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def configure(root: Path, run: str, clients: Sequence[str] = CLIENTS, **grpo: Any) -> tuple[Path, int, int]:
    """Point the kit at fresh loopback ports and a run folder; return the kit and the two ports."""
    fed, server_port, keyholder_port = root / "fed", free_port(), free_port()
    update_toml(fed / "keyholder/keyholder.toml", {"service": {"listen": f"127.0.0.1:{keyholder_port}"}})
    update_toml(
        fed / "server/server.toml",
        {
            "federation": {"keyholder_address": f"127.0.0.1:{keyholder_port}"},
            "service": {"listen": f"127.0.0.1:{server_port}", "heartbeat_seconds": 1.0},
            "run": {
                "base_model": str(root / "base"),
                "run_dir": str(root / run),
                "run_id": run,
            },
            "router": {"clusters": 2, "epochs": 20, "calibration_items": 24},
            "eval": {"limit": 16},
            "grpo": {"prompts_per_step": 2, "group_size": 4, "save_steps": 1, **grpo},
            "secure": {"deadline_seconds": 20.0},
        },
    )
    for name in clients:
        update_toml(
            fed / "clients" / name / "client.toml",
            {
                "federation": {
                    "server_address": f"127.0.0.1:{server_port}",
                    "keyholder_address": f"127.0.0.1:{keyholder_port}",
                }
            },
        )
    return fed, server_port, keyholder_port


def start_federation(fed: Path, processes: ProcessGroup, clients: Sequence[str] = CLIENTS) -> None:
    """Start the key holder and ``clients`` (``client join``) of the kit ``fed``."""
    processes.start("keyholder", "keyholder", "serve", "--config", str(fed / "keyholder/keyholder.toml"))
    for name in clients:
        processes.start(name, "client", "join", "--config", str(fed / "clients" / name / "client.toml"))
