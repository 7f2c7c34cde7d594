"""The benchmark table writer turns given figures into one valid Markdown table (no timing asserted)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIGURES = {
    "secure_path": {
        "steps": 4,
        "rows": [
            {"K": 3, "rollouts": 64, "step": 2.0, "secure": 0.5, "waiting": 0.45}
            | {"encryption": 0.05, "plain_fusion": 1e-5}
        ],
    },
    "ckks_fusion": {
        "rows": [{"K": k, "N": 1024, "fuse_ms": 4.0 * k, "plaintext_ms": 0.01} for k in (2, 4, 8, 16)]
    },
    "dp_reward_models": {
        "rows": [
            {"arch": "compact", "shard": "color", "epsilon": math.inf, "accuracy": 0.9, "seconds": 10.0},
            {"arch": "compact", "shard": "color", "epsilon": 8.0, "accuracy": 0.85, "seconds": 15.0},
        ]
    },
    "grpc_transport": {
        "rows": [{"payload_bytes": 330_000, "calls": 200, "mtls_ms": 1.5, "insecure_ms": 1.0, "ratio": 1.5}]
    },
}
HOST = {
    "cpu": "Test CPU",
    "cores": 2,
    "python": "3.11",
    "os": "Linux",
    "versions": {"torch": "2.13.0", "tenseal": "0.3.18"},
    "date": "2026-01-01 00:00 UTC",
}


def test_the_table_has_one_row_per_ratio_and_every_row_fits_the_header() -> None:
    module = run_all()
    rows = module.ratios(FIGURES)
    page = module.markdown(rows, HOST, 600.0, "quick")
    table = [line for line in page.splitlines() if line.startswith("|")]
    header, rule, *body = table
    columns = header.count("|")
    assert rule.count("|") == columns
    assert all(line.count("|") == columns for line in body)
    assert len(body) == 2 + 1 + 1 + 1 + 3  # secure path ×2, fusion alone, DP, mTLS, K = 4, 8, 16
    ratios = [line.rsplit("|", 2)[1].strip() for line in body]
    # secure 0.5 s vs plain 0.45 - 0.05 + 1e-5 s; fusion alone 32 / 0.01; DP 15 / 10; mTLS; K vs K = 2
    assert ratios == ["1.25×", "1.05×", "3,200×", "1.50×", "1.50×", "2.00×", "4.00×", "8.00×"]
    assert "Test CPU, 2 cores" in page
    assert "torch 2.13.0, tenseal 0.3.18" in page
    assert "took 10.0 min" in page
