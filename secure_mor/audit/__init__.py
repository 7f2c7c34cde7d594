"""``secure-mor audit``: offline checks of privacy spent, decryptions made and logs kept whole.

What each data owner spent, that only fusions were decrypted, and — against the server runs' anchors —
that no party's log was cut short.
"""

from secure_mor.audit.auditor import Auditor, load_budgets
from secure_mor.audit.findings import AuditReport, ClientPrivacy, DecryptionSummary, Finding, Status
from secure_mor.audit.sources import AuditInputError

__all__ = [
    "AuditInputError",
    "AuditReport",
    "Auditor",
    "ClientPrivacy",
    "DecryptionSummary",
    "Finding",
    "Status",
    "load_budgets",
]
