"""``secure-mor audit``: check offline what each data owner spent and that only fusions were decrypted."""

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
