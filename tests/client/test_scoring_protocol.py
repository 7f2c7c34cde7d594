"""Scoring messages round-trip (stub sync is in tests/test_protocol_stubs.py); the client is isolated."""

from __future__ import annotations

import subprocess
import sys

from secure_mor.protocol import scoring as sp


def test_scoring_messages_round_trip() -> None:
    task = sp.ServerMessage(
        task=sp.ScoringTask(
            step_id="s-1",
            rollouts=[sp.Rollout(image_ref="i", question="q", answer="a")],
            images={"i": b"png"},
        )
    )
    assert sp.ServerMessage.FromString(task.SerializeToString()) == task
    reply = sp.ClientMessage(
        calibration=sp.CalibrationReply(
            request_id="c", clusters=[sp.ClusterAccuracy(cluster=1, accuracy=0.5, count=2)]
        )
    )
    assert sp.ClientMessage.FromString(reply.SerializeToString()) == reply


def test_client_never_imports_the_server() -> None:
    code = (
        "import sys, secure_mor.client.agent, secure_mor.client.run, secure_mor.cli.client; "
        "assert not [m for m in sys.modules if m.startswith('secure_mor.server')], 'server imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
