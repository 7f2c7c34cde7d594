"""secure-mor: federated alignment of vision-language models with a mixture of encrypted, private rewards.

The shared core lives here; the trust domains install as ``secure_mor.client``, ``secure_mor.server``
and ``secure_mor.crypto`` (folders ``client/``, ``server/`` and ``crypto/`` at the repository root).
"""

from secure_mor._version import __version__

__all__ = ["__version__"]
