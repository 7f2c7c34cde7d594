"""Helpers shared by CLI commands: loading configs with command-line overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from secure_mor.config import load_config
from secure_mor.data import DataConfig


def data_config_from(path: Path | None, **overrides: Any) -> DataConfig:
    """The ``[data]`` table of ``path`` (or the defaults), with non-None ``overrides`` applied."""
    base = load_config(DataConfig, path, table="data") if path is not None else DataConfig()
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **changes)
