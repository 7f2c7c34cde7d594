"""CKKS parameters checked against the 128-bit security bound, and reading them back from a context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from secure_mor.config import help_field
from secure_mor.crypto.errors import ParameterError

# Largest total coefficient-modulus bits for 128-bit security (HomomorphicEncryption.org standard, SEAL).
MAX_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}


@dataclass(frozen=True)
class CkksParams:
    """CKKS parameters, checked against the 128-bit security bound for their ring dimension."""

    poly_modulus_degree: int = help_field(
        8192, "Ring dimension N (a power of two); N/2 values per ciphertext."
    )
    coeff_mod_bit_sizes: tuple[int, ...] = help_field(
        (60, 40, 40, 60), "Bit sizes of the coefficient-modulus primes; their sum must fit the 128-bit bound."
    )
    scale_bits: int = help_field(40, "log2 of the encoding scale; the middle primes must have this size.")

    def __post_init__(self) -> None:
        n, bits = self.poly_modulus_degree, self.coeff_mod_bit_sizes
        if n not in MAX_BITS_128:
            raise ParameterError(f"poly_modulus_degree: expected one of {sorted(MAX_BITS_128)}, found {n}")
        if len(bits) < 3 or any(not 20 <= b <= 60 for b in bits):
            raise ParameterError(
                f"coeff_mod_bit_sizes: expected at least 3 primes of 20–60 bits, found {list(bits)}"
            )
        if sum(bits) > MAX_BITS_128[n]:
            raise ParameterError(
                f"coeff_mod_bit_sizes: {sum(bits)} bits in total exceed {MAX_BITS_128[n]}, the 128-bit "
                f"security bound for poly_modulus_degree {n}; use fewer or smaller primes or a larger N"
            )
        if any(b != self.scale_bits for b in bits[1:-1]) or bits[0] <= self.scale_bits:
            raise ParameterError(
                f"scale_bits: {self.scale_bits} must equal every middle prime and be below the first "
                f"(found coeff_mod_bit_sizes {list(bits)}); e.g. [60, 40, 40, 60] with scale_bits 40"
            )

    @property
    def slots(self) -> int:
        """Values per ciphertext (N / 2)."""
        return self.poly_modulus_degree // 2

    @property
    def total_bits(self) -> int:
        """Total coefficient-modulus bits (what the security bound limits)."""
        return sum(self.coeff_mod_bit_sizes)

    def to_json(self) -> dict[str, Any]:
        """Describe the parameters as JSON (signed with the public context, recorded in logs)."""
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
        }


def context_parameters(ctx: Any) -> tuple[int, tuple[int, ...]]:
    """Read (N, coefficient-modulus bit sizes) from a TenSEAL context's SEAL modulus-switching chain.

    Each level of the chain drops the last data prime, so consecutive totals give the primes' sizes;
    the key level adds the special prime.
    """
    data = ctx.seal_context().data
    degree = int(data.first_context_data().parms().poly_modulus_degree())
    totals, level = [], data.first_context_data()
    while level is not None:
        totals.append(int(level.total_coeff_modulus_bit_count()))
        level = level.next_context_data()
    primes = [totals[-1]] + [totals[i] - totals[i + 1] for i in range(len(totals) - 2, -1, -1)]
    special = int(data.key_context_data().total_coeff_modulus_bit_count()) - totals[0]
    return degree, (*primes, special)
