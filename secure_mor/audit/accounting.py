"""ε recomputed from a ledger's recorded DP events with two independent accountants (Opacus PRV, RDP).

Each event is ``[noise_multiplier, sample_rate, steps]``: ``steps`` Poisson-sampled Gaussian mechanisms,
exactly what DP-SGD with Poisson sampling runs. PRV is tight; RDP is a looser upper bound; a large
disagreement between them is suspicious (a warning, a failure under ``--strict``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from opacus.accountants import PRVAccountant, RDPAccountant

Event = tuple[float, float, int]


def parse_events(raw: object) -> list[Event]:
    """The ``events`` field of a ledger payload as checked tuples; ``ValueError`` says what is wrong."""
    if not isinstance(raw, list) or not raw:
        raise ValueError(
            f"events must be a non-empty list of [noise_multiplier, sample_rate, steps], found {raw!r}"
        )
    events: list[Event] = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            raise ValueError(f"event {item!r} is not [noise_multiplier, sample_rate, steps]")
        sigma, rate, steps = item
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"event {item!r}: steps must be an integer ≥ 0")
        if not isinstance(sigma, int | float) or not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"event {item!r}: noise_multiplier must be a number > 0")
        if not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise ValueError(f"event {item!r}: sample_rate must be in (0, 1]")
        events.append((float(sigma), float(rate), steps))
    return events


def epsilon_prv(events: Sequence[Event], delta: float) -> float:
    """ε at ``delta`` of the composed events under Opacus' PRV accountant."""
    return _epsilon(PRVAccountant(), events, delta)


def epsilon_rdp(events: Sequence[Event], delta: float) -> float:
    """ε at ``delta`` of the composed events under Opacus' RDP accountant."""
    return _epsilon(RDPAccountant(), events, delta)


def _epsilon(accountant: PRVAccountant | RDPAccountant, events: Sequence[Event], delta: float) -> float:
    history = [event for event in events if event[2] > 0]
    if not history:
        return 0.0
    accountant.history = list(history)
    return float(accountant.get_epsilon(delta))
