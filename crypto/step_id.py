"""The one rule for step ids, which the key holder, every client and the server's config all apply.

A step id is ``<run_id>/<n>``: the key holder refuses any id outside ``STEP_ID`` and any id it has
decrypted before; clients refuse tasks whose id does not match. A run id is checked against the same
rule where a config is loaded, so a run that could never be scored stops before it starts.
"""

from __future__ import annotations

import re

STEP_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
RUN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
"""A run id leaves room for ``/<step number>`` within ``STEP_ID``'s 128 characters."""


def run_id_problem(run_id: str) -> str | None:
    """Why ``run_id`` cannot prefix step ids (None if it can)."""
    if RUN_ID.match(run_id):
        return None
    return (
        f"expected 1–100 characters of A–Z a–z 0–9 . _ : - (step ids are '<run_id>/<n>' and must match "
        f"{STEP_ID.pattern}), found {run_id!r}"
    )
