"""Host several scoring agents in one process: ``python tests/_agents.py --model DIR CONFIG [CONFIG ...]``.

Each agent is a full ``ScoringAgent`` with its own client kit — its own certificate, signing key and
config — and its own outbound mTLS stream to the server, exactly what ``secure-mor client join`` runs;
only the process (and so the Python interpreter and torch) is shared, and every agent scores with its
own copy of the reward model in ``DIR``. SIGTERM or SIGINT stops them all.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import torch

from secure_mor.client.agent import ScoringAgent
from secure_mor.client.config import load_client_config
from secure_mor.client.reward_model import load_reward_model


def main() -> None:
    """Start one agent thread per config; wait for a stop signal; stop every agent."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="A trained reward model folder.")
    parser.add_argument("configs", type=Path, nargs="+", help="One client.toml per agent.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # many agents share two cores: no intra-op threads fighting each other
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agents = [ScoringAgent(load_client_config(c), load_reward_model(args.model), stop) for c in args.configs]
    threads = [threading.Thread(target=a.run, name=a.config.federation.identity) for a in agents]
    for thread in threads:
        thread.start()
    print(f"{len(agents)} agents started", flush=True)
    stop.wait()
    for thread in threads:
        thread.join(10)
    print(f"stopped; tasks scored: {sum(a.tasks_scored for a in agents)}", flush=True)


if __name__ == "__main__":
    main()
