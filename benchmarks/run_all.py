"""The benchmark suite in one run (``make bench``): one Markdown table of the costs of security, as ratios.

Runs each benchmark of the earlier issues as a subprocess with ``--json`` (``base_pretrain.py``,
``ckks_fusion.py``, ``dp_reward_models.py``, ``secure_path.py``) plus ``grpc_transport.py``, collects
their figures and writes ``benchmarks/results/latest.md`` and ``latest.json`` with the machine they were
measured on. Every ratio in the table comes from this one run:

* secure path vs plaintext fusion — one MoR GRPO step (K = 3 clients, 64 rollouts): the secure path
  (fan-out, the clients' scoring and encryption, transport, encrypted fusion, decryption) against the
  same step fused on plaintext scores (the same waiting less the clients' encryption, plus the NumPy
  fusion of the same shape); and the whole step against the step with that plaintext path instead;
* encrypted vs plaintext fusion alone (K = 8, N = 1,024): ``weighted_sum`` on ciphertexts vs NumPy;
* DP training vs non-private: the compact reward model on one shard at ε = 8 vs ε = ∞, training time
  (and held-out accuracy beside it);
* mTLS vs insecure gRPC: the same echo call with the same 330 kB payload on loopback;
* fusion cost vs K: encrypted fusion at K = 4, 8, 16 relative to K = 2 (N = 1,024).

``--quick`` (what ``make bench`` runs) shrinks every benchmark so the suite takes minutes on two cores;
``--full`` runs each with its own defaults (hours). Timings are medians; nothing here asserts them.

    .venv/bin/python benchmarks/run_all.py --quick [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
QUICK: dict[str, list[str]] = {
    "base_pretrain": ["--steps", "50", "--limit", "100"],
    "ckks_fusion": ["--repeats", "7", "--clients", "2", "4", "8", "16", "--scores", "1024"],
    "dp_reward_models": ["--archs", "compact", "--epsilons", "inf,3", "--shards", "color", "--seeds", "0"],
    "grpc_transport": ["--calls", "200"],
    "secure_path": ["--clients", "3", "--steps", "4"],
}
FULL: dict[str, list[str]] = {
    "base_pretrain": [],
    "ckks_fusion": ["--clients", "2", "4", "8", "16", "32", "--scores", "1024", "4096"],
    "dp_reward_models": ["--archs", "compact", "--epsilons", "inf,8,3,1", "--seeds", "0"],
    "grpc_transport": ["--calls", "1000"],
    "secure_path": ["--clients", "3", "8", "16"],
}
PACKAGES = ("torch", "tenseal", "opacus", "grpcio", "transformers", "trl", "numpy")


def machine() -> dict[str, Any]:
    """CPU model, cores, Python and library versions, and the date: what the figures were measured on."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": model,
        "cores": affinity,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run_benchmark(name: str, args: Sequence[str], raw: Path) -> dict[str, Any]:
    """Run ``benchmarks/<name>.py`` with ``--json``; return its figures and the seconds it took."""
    out = raw / f"{name}.json"
    log = raw / f"{name}.log"
    command = [sys.executable, str(HERE / f"{name}.py"), *args, "--json", str(out)]
    print(f"[bench] {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    with log.open("w") as sink:
        subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=True)
    seconds = time.monotonic() - started
    print(f"[bench] {name}: {seconds:.0f} s (log: {log})", flush=True)
    figures: dict[str, Any] = json.loads(out.read_text())
    figures["seconds"] = seconds
    return figures


def _row(rows: Sequence[Mapping[str, Any]], **match: Any) -> Mapping[str, Any]:
    for row in rows:
        if all(row.get(key) == value for key, value in match.items()):
            return row
    raise KeyError(f"no row with {match}")


def ratios(figures: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """The table's rows — measure, setting, figures compared, ratio — from the benchmarks' figures."""
    out: list[dict[str, str]] = []
    path = figures["secure_path"]["rows"][0]
    plain_path = path["waiting"] - path["encryption"] + path["plain_fusion"]
    out.append(
        {
            "measure": "secure path vs plaintext fusion (one GRPO step)",
            "setting": f"K = {path['K']}, {path['rollouts']} rollouts, "
            f"median of {figures['secure_path']['steps']} steps",
            "compared": f"{1e3 * path['secure']:.0f} ms vs {1e3 * plain_path:.0f} ms",
            "ratio": f"{path['secure'] / plain_path:.2f}×",
        }
    )
    plain_step = path["step"] - path["secure"] + plain_path
    out.append(
        {
            "measure": "GRPO step with the secure path vs with plaintext fusion",
            "setting": f"K = {path['K']}, {path['rollouts']} rollouts",
            "compared": f"{path['step']:.2f} s vs {plain_step:.2f} s",
            "ratio": f"{path['step'] / plain_step:.2f}×",
        }
    )
    fusion = figures["ckks_fusion"]["rows"]
    k8 = _row(fusion, K=8, N=1024)
    out.append(
        {
            "measure": "encrypted vs plaintext fusion alone",
            "setting": "K = 8, N = 1,024, CKKS N = 8,192",
            "compared": f"{k8['fuse_ms']:.1f} ms vs {k8['plaintext_ms']:.3f} ms",
            "ratio": f"{k8['fuse_ms'] / k8['plaintext_ms']:,.0f}×",
        }
    )
    dp_rows = figures["dp_reward_models"]["rows"]
    private = [r for r in dp_rows if not math.isinf(r["epsilon"])]
    for row in private:
        reference = _row(dp_rows, arch=row["arch"], shard=row["shard"], epsilon=float("inf"))
        out.append(
            {
                "measure": "DP training vs non-private (time)",
                "setting": f"{row['arch']}, shard {row['shard']}, ε = {row['epsilon']:g} vs ∞",
                "compared": f"{row['seconds']:.1f} s vs {reference['seconds']:.1f} s "
                f"(held-out acc {row['accuracy']:.3f} vs {reference['accuracy']:.3f})",
                "ratio": f"{row['seconds'] / reference['seconds']:.2f}×",
            }
        )
    transport = figures["grpc_transport"]["rows"][0]
    out.append(
        {
            "measure": "mTLS vs insecure gRPC (same call)",
            "setting": f"{transport['payload_bytes']:,} B echo, loopback, median of {transport['calls']}",
            "compared": f"{transport['mtls_ms']:.2f} ms vs {transport['insecure_ms']:.2f} ms",
            "ratio": f"{transport['ratio']:.2f}×",
        }
    )
    k2 = _row(fusion, K=2, N=1024)
    for row in sorted((r for r in fusion if r["N"] == 1024 and r["K"] > 2), key=lambda r: r["K"]):
        out.append(
            {
                "measure": "encrypted fusion cost vs K",
                "setting": f"K = {row['K']} vs K = 2, N = 1,024",
                "compared": f"{row['fuse_ms']:.1f} ms vs {k2['fuse_ms']:.1f} ms",
                "ratio": f"{row['fuse_ms'] / k2['fuse_ms']:.2f}×",
            }
        )
    return out


def markdown(rows: Sequence[Mapping[str, str]], host: Mapping[str, Any], seconds: float, mode: str) -> str:
    """The Markdown page: the one table of ratios, then the machine and how long the suite took."""
    lines = [
        "| measure | setting | secure / private vs plain | ratio |",
        "| --- | --- | --- | ---: |",
        *(f"| {r['measure']} | {r['setting']} | {r['compared']} | {r['ratio']} |" for r in rows),
    ]
    versions = ", ".join(f"{name} {version}" for name, version in host["versions"].items())
    lines += [
        "",
        f"Measured {host['date']} on {host['cpu']}, {host['cores']} cores, Python {host['python']}, "
        f"{host['os']}; {versions}. `make bench` ({mode} mode) took {seconds / 60:.1f} min.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", default=True, help="small settings (default)")
    mode.add_argument("--full", action="store_true", help="each benchmark's own, larger settings")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--only", nargs="+", choices=sorted(QUICK), help="run these only (table needs all)")
    args = parser.parse_args()
    settings = FULL if args.full else QUICK
    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    figures = {name: run_benchmark(name, settings[name], raw) for name in (args.only or sorted(settings))}
    seconds = time.monotonic() - started
    if args.only:
        print(json.dumps(figures, indent=2, default=str))
        return
    host = machine()
    rows = ratios(figures)
    page = markdown(rows, host, seconds, "full" if args.full else "quick")
    (args.out / "latest.md").write_text(page)
    (args.out / "latest.json").write_text(
        json.dumps({"machine": host, "seconds": seconds, "ratios": rows, "figures": figures}, indent=2)
    )
    print("\n" + page)


if __name__ == "__main__":
    main()
