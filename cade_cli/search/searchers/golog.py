"""Natural logarithm computed exactly as Go's `math.Log` computes it.

Determined sizes Adaptive ASHA's brackets with `int(Log(L) / Log(d)) + 1`, computed by Go.
Go's Log follows FreeBSD's `e_log.c` (frexp reduction, then a degree-14 polynomial in
s = f / (2 + f)); the C library's `log` (behind Python's `math.log`) differs from it in the
last bit for some inputs, and the truncation then gives one rung more or fewer. For example
Go gives ln(243) / ln(3) == 5.0 where Python's `math.log` gives 4.999999999999999.
This module reproduces Go's arithmetic step by step so bracket plans match Determined's.
"""

from __future__ import annotations

import math

# ln(2) split in two so that k * LN2_HI is exact for |k| < 2000 (values given bit-exactly).
LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
# Remez coefficients of R(s) = L1 s^2 + L2 s^4 + ... + L7 s^14 on [0, 0.1716].
L1 = float.fromhex("0x1.5555555555593p-1")
L2 = float.fromhex("0x1.999999997fa04p-2")
L3 = float.fromhex("0x1.2492494229359p-2")
L4 = float.fromhex("0x1.c71c51d8e78afp-3")
L5 = float.fromhex("0x1.7466496cb03dep-3")
L6 = float.fromhex("0x1.39a09d078c69fp-3")
L7 = float.fromhex("0x1.2f112df3e5244p-3")

HALF_SQRT2 = math.sqrt(2.0) / 2.0


def go_log(x: float) -> float:
    """ln(x) with the same rounding as Go's math.Log (pure-Go algorithm)."""
    if math.isnan(x) or x == math.inf:
        return x
    if x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    # Reduce: x = 2**k * (1 + f) with sqrt(2)/2 < 1 + f < sqrt(2).
    mantissa, exponent = math.frexp(x)
    if mantissa < HALF_SQRT2:
        mantissa *= 2.0
        exponent -= 1
    f = mantissa - 1.0
    k = float(exponent)
    # log(1 + f) = f - (hfsq - s * (hfsq + R)), with R the polynomial in s = f / (2 + f).
    s = f / (2.0 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (L1 + s4 * (L3 + s4 * (L5 + s4 * L7)))
    t2 = s4 * (L2 + s4 * (L4 + s4 * L6))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)


def log_ratio_floor(value: float, base: float) -> int:
    """int(ln(value) / ln(base)) as Go computes it (truncation, like Go's int())."""
    return int(go_log(float(value)) / go_log(float(base)))
