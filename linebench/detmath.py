"""Elementary functions that give the same bits on every CPU, platform and dependency version.

A generated row must be a pure function of (seed, task, split, index, spec) and linebench's code.
numpy's transcendental ufuncs are not: they run SIMD kernels picked per CPU (AVX2 / AVX-512 give
different last bits for arctan2, arcsin, exp, log, power), or the platform libm (glibc, macOS,
aarch64 differ), and `np.dot` / `@` / `einsum` go through BLAS kernels that sum in a CPU-specific
order, with or without FMA. What IEEE-754 does guarantee everywhere is that +, -, *, /, sqrt are
correctly rounded, and that rint, floor, abs, min/max, comparisons, copysign and frexp are exact.
So everything here is built from those, one numpy ufunc call per operation (a compiler cannot
fuse a multiply and an add that are separate calls into an FMA), evaluating polynomials by Horner.

Accuracy, as measured for tests/test_detmath.py (max error against the exact value; numpy's own in
brackets): sin, cos 0.74 ulp (0.51) for |x| <= 8*pi, the callers' range (the reduction stays exact
up to |x| < 2**20; beyond it accuracy, not determinism, degrades); arctan2 1.17 ulp (0.75); arcsin
1.93 ulp (0.79); log 0.81 ulp (0.58) on 1e-304..1e304 (subnormals: within 1 ulp of numpy); hypot 1.09 ulp
(0.56), with no overflow guard (callers' coordinates are < 1e4 px). So at most 1 ulp from numpy for
sin, cos, log, hypot and 2 for arctan2, arcsin.

Every function takes a float64 array or scalar; a Python float (or int) in gives a Python float
out, an array or numpy scalar gives numpy's. Scalar and array inputs take the same code path, so
they give the same bits.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

# --------------------------------------------------------------------------- constants
# Derived here with exact rational / 70-digit decimal arithmetic (software, so the same on every
# machine) and rounded once to float64, instead of being pasted in as magic numbers.
_DIGITS = 70


def _atan_decimal(c: Decimal) -> Decimal:
    """atan(c) for 0 <= c <= 1 to ~_DIGITS digits: halve the angle (atan c = 2 atan(c / (1 +
    sqrt(1 + c^2)))) until the Taylor series converges fast, then sum it."""
    with localcontext() as ctx:
        ctx.prec = _DIGITS + 10
        doublings = 0
        while c > Decimal("0.1"):
            c = c / (1 + (1 + c * c).sqrt())
            doublings += 1
        total, power, n, c2 = Decimal(0), c, 1, c * c
        eps = Decimal(f"1e-{_DIGITS + 5}")
        while abs(power) > eps:
            total += power / n
            power = -power * c2
            n += 2
        return total * (1 << doublings)


def _to_float(v: Decimal) -> float:
    return float(v)  # Decimal -> float goes through its exact decimal string: correctly rounded


def _high_bits(v: Decimal, bits: int) -> float:
    """`v` rounded to `bits` significant bits: its products with integers below 2**(53 - bits)
    are exact, which is what makes a Cody-Waite reduction exact."""
    exp = math.frexp(float(v))[1]  # 2**(exp - 1) <= |v| < 2**exp
    with localcontext() as ctx:
        ctx.prec = _DIGITS + 10
        shift = bits - exp  # (no ** anywhere in this module: tests/test_detmath.py checks for it)
        scaled = v * (1 << shift) if shift >= 0 else v / (1 << -shift)
        scaled = int(scaled.to_integral_value())
    return math.ldexp(float(scaled), exp - bits)  # scaled < 2**bits: exact


def _split(v: Decimal, bits: tuple[int, ...]) -> tuple[float, ...]:
    """`v` as a sum of floats: one of each given bit width, then the rest rounded to 53 bits."""
    parts = []
    with localcontext() as ctx:
        ctx.prec = _DIGITS + 10
        for b in bits:
            parts.append(_high_bits(v, b))
            v = v - Decimal(parts[-1])
        parts.append(_to_float(v))
    return tuple(parts)


with localcontext() as _ctx:
    _ctx.prec = _DIGITS + 10
    _PI_DEC = 4 * _atan_decimal(Decimal(1))
    _PIO2_DEC = _PI_DEC / 2  # (the module's decimal arithmetic stays inside this context)
    _TWO_OVER_PI_DEC = 2 / _PI_DEC
    _LN2_DEC = Decimal(2).ln()
    _SQRT_HALF_DEC = Decimal("0.5").sqrt()

# pi/2 in four pieces: three of 33 bits (k * piece exact for |k| < 2**20) and the rest; 152 bits
# of pi/2 in all, enough that x - k*pi/2 keeps full relative precision even next to a multiple.
_PIO2_1, _PIO2_2, _PIO2_3, _PIO2_4 = _split(_PIO2_DEC, (33, 33, 33))
_TWO_OVER_PI = _to_float(_TWO_OVER_PI_DEC)
# ln 2 with 42 bits first: e * _LN2_HI is exact for every binary exponent e of a double.
_LN2_HI, _LN2_LO = _split(_LN2_DEC, (42,))
_SQRT_HALF = _to_float(_SQRT_HALF_DEC)


def _sign(n: int) -> int:
    return -1 if n % 2 else 1  # (-1)^n


# Taylor coefficients, each 1/n! or 1/n rounded once. Terms beyond these are below 2**-58 of the
# result on the reduced ranges (|r| <= pi/4 for sin/cos, |u| <= 1/32 for atan, |s| <= 0.172 for log).
_SIN = tuple(float(Fraction(_sign(n), math.factorial(2 * n + 1))) for n in range(1, 9))  # r^3 .. r^17
_COS = tuple(float(Fraction(_sign(n), math.factorial(2 * n))) for n in range(2, 9))  # r^4 .. r^16
_ATAN = tuple(float(Fraction(_sign(n), 2 * n + 1)) for n in range(1, 6))  # u^3 .. u^11
_LOG = tuple(float(Fraction(2, 2 * n + 1)) for n in range(1, 11))  # 2 atanh(s) = 2s + s * (s^2 * 2/3 + ...)

# atan2 reduces to t = min(|x|, |y|) / max(|x|, |y|) in [0, 1], split into 32 intervals of width
# 1/32: interval i > 0 is centred on c_i = (2i + 1) / 64, interval 0 uses c_0 = 0 (so tiny angles
# keep full relative precision), and atan(t) = atan(c_i) + atan(u), u = (t - c_i) / (1 + t c_i).
# The angle is then base + sign * atan(t), one of four cases by half-plane and by which of |x|,
# |y| is larger: atan(c_i) + atan(u), pi/2 - atan(c_i) - atan(u), pi - ..., pi/2 + ...; each case's
# base (to 106 bits, as hi + lo) and sign sit in one table, so one lookup does the quadrant logic.
_ATAN_C = np.array([0.0] + [(2 * i + 1) / 64 for i in range(1, 32)])
with localcontext() as _ctx:
    _ctx.prec = _DIGITS + 10
    _atan_c = [Decimal(0)] + [_atan_decimal(Decimal((2 * i + 1) / 64)) for i in range(1, 32)]
    _bases = [a for a in _atan_c] + [_PIO2_DEC - a for a in _atan_c] + [_PI_DEC - a for a in _atan_c] + [_PIO2_DEC + a for a in _atan_c]
_ATAN_BASE_HI, _ATAN_BASE_LO = (np.array(col) for col in zip(*[_split(b, (53,)) for b in _bases]))
_ATAN_SIGN = np.repeat([1.0, -1.0, -1.0, 1.0], 32)  # right, right-swapped, left, left-swapped
for _a in (_ATAN_C, _ATAN_BASE_HI, _ATAN_BASE_LO, _ATAN_SIGN):
    _a.setflags(write=False)


# --------------------------------------------------------------------------- helpers


def _args(*xs):
    """float64 arrays of the inputs, and how to give the result back (Python float for Python
    scalars, as the callers that used `math` expect)."""
    arrays = tuple(np.asarray(x, dtype=np.float64) for x in xs)
    py = all(isinstance(x, (int, float)) and not isinstance(x, np.generic) for x in xs)
    return arrays, (float if py else _numpy_result)


def _numpy_result(a):
    a = np.asarray(a)
    return a[()] if a.ndim == 0 else a


def _horner(z, coeffs):
    """coeffs[0] + z * (coeffs[1] + z * (...)), one multiply and one add per step."""
    acc = coeffs[-1]
    for c in coeffs[-2::-1]:
        acc = acc * z
        acc = acc + c
    return acc


def _two_sum(a, b):
    """s + e == a + b exactly (Knuth's TwoSum: no precondition on the magnitudes)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


# --------------------------------------------------------------------------- sin, cos


def _reduce_pio2(x):
    """x = k * pi/2 + (hi + lo) with |hi + lo| <= pi/4 (a hair more at ties), k a float integer.

    x - k*_PIO2_1 is exact for |x| < 2**20 (both are multiples of ulp(x) and the difference is no
    larger than x); the next pieces go through TwoSum, so hi + lo carries ~100 correct bits even
    where x sits next to a multiple of pi/2 (sin(pi) = 1.2246e-16, as libm has it)."""
    k = np.rint(x * _TWO_OVER_PI) + 0.0  # + 0.0 turns rint's -0.0 into +0.0, so x = -0.0 keeps its sign below
    r = x - k * _PIO2_1
    hi, lo = _two_sum(r, -(k * _PIO2_2))
    hi, e = _two_sum(hi, -(k * _PIO2_3))
    lo = lo + e
    lo = lo - k * _PIO2_4
    s = hi + lo  # renormalise: |lo| is far below |hi| here, so Fast2Sum is exact
    lo = lo - (s - hi)
    return k, s, lo


def _sin_kernel(hi, lo, z):
    """sin(hi + lo) for |hi| <= pi/4, z = hi*hi: sin(hi) + lo*cos(hi) to first order in lo."""
    corr = hi * z
    corr = corr * _horner(z, _SIN)
    corr = corr + lo * (1.0 - 0.5 * z)
    return hi + corr


def _cos_kernel(hi, lo, z):
    """cos(hi + lo) for |hi| <= pi/4: 1 - z/2 is formed with its rounding error kept, so the result
    is off by little more than its final rounding."""
    hz = 0.5 * z
    w = 1.0 - hz
    err = (1.0 - w) - hz  # exact: w is within a factor 2 of 1
    tail = z * z
    tail = tail * _horner(z, _COS)
    tail = tail - hi * lo
    return w + (err + tail)


def _sincos(x):
    with np.errstate(invalid="ignore", over="ignore"):
        k, hi, lo = _reduce_pio2(x)
        z = hi * hi
        s = _sin_kernel(hi, lo, z)
        c = _cos_kernel(hi, lo, z)
        q = k - 4.0 * np.floor(k * 0.25)  # quadrant 0..3 (NaN for inf/NaN x: falls through to NaN)
    sin = np.where(q == 0, s, np.where(q == 1, c, np.where(q == 2, -s, -c)))
    cos = np.where(q == 0, c, np.where(q == 1, -s, np.where(q == 2, -c, s)))
    sin = np.where(x == 0, x, sin)  # sin(-0.0) = -0.0
    return sin, cos


def sin(x):
    """sin(x), x in radians. Within 1 ulp for |x| <= 8*pi (tested); deterministic for any x."""
    (a,), out = _args(x)
    return out(_sincos(a)[0])


def cos(x):
    """cos(x), x in radians. Within 1 ulp for |x| <= 8*pi (tested); deterministic for any x."""
    (a,), out = _args(x)
    return out(_sincos(a)[1])


def sincos(x):
    """(sin(x), cos(x)) from one argument reduction: the same bits as sin(x) and cos(x)."""
    (a,), out = _args(x)
    s, c = _sincos(a)
    return out(s), out(c)


# --------------------------------------------------------------------------- arctan2, arcsin


def _arctan2(y, x):
    ax, ay = np.abs(x), np.abs(y)
    swap = ay > ax  # then atan2 = pi/2 -+ atan(|x| / |y|): keep the ratio in [0, 1]
    big = np.maximum(ax, ay)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(big == 0, 0.0, np.minimum(ax, ay) / big)  # 0/0 at the origin: angle 0 (or pi); NaN stays NaN
    i = np.floor(t * 32.0)
    i = np.where(i < 31.0, i, 31.0).astype(np.intp)  # t = 1 -> the last interval; NaN -> any valid index
    c = _ATAN_C[i]
    u = (t - c) / (1.0 + t * c)  # t - c is exact (Sterbenz: t and c within a factor 2, or c = 0)
    z = u * u
    poly = u * z
    poly = poly * _horner(z, _ATAN)
    # x < 0 or x = -0.0: the angle is measured from pi (atan2(+-0, -0) = +-pi)
    case = i + 32 * swap + 64 * np.signbit(x)
    sign = _ATAN_SIGN[case]
    angle = _ATAN_BASE_HI[case] + (sign * u + (_ATAN_BASE_LO[case] + sign * poly))
    return np.copysign(angle, y)


def arctan2(y, x):
    """atan2(y, x) in radians, every quadrant, signed zeros as IEEE-754 has them (atan2(+-0, -0) =
    +-pi). Within 2 ulp of numpy for finite inputs (tested); infinite inputs give NaN."""
    (b, a), out = _args(y, x)
    return out(_arctan2(b, a))


def arcsin(x):
    """asin(x) for -1 <= x <= 1 as atan2(x, sqrt(1 - x^2)), 1 - x^2 formed without cancellation.
    Within 2 ulp of numpy (tested); asin(+-1) = +-pi/2 exactly as rounded; |x| > 1 gives NaN."""
    (a,), out = _args(x)
    ax = np.abs(a)
    with np.errstate(invalid="ignore"):
        # near |x| = 1, (1 - |x|) is exact (Sterbenz) and (1 + |x|) loses half an ulp at most
        one_minus_sq = np.where(ax < 0.5, 1.0 - a * a, (1.0 - ax) * (1.0 + ax))
        return out(_arctan2(a, np.sqrt(one_minus_sq)))


# --------------------------------------------------------------------------- log, hypot


def _log(x):
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m, e = np.frexp(x)  # x = m * 2**e, m in [0.5, 1): exact, subnormals included
        low = m < _SQRT_HALF
        m = np.where(low, m + m, m)  # m in [sqrt(1/2), sqrt(2)): |log m| <= ln(2)/2
        e = np.where(low, e - 1, e).astype(np.float64)
        f = m - 1.0  # exact (Sterbenz)
        s = f / (2.0 + f)  # log(1 + f) = 2 atanh(s), |s| <= 0.172
        z = s * s
        r = z * _horner(z, _LOG)
        hf2 = 0.5 * f
        hf2 = hf2 * f
        # log(1 + f) = f - (f^2/2 - s*(f^2/2 + r)): f is exact and the bracket small, so the sum
        # is off by little more than one rounding
        inner = hf2 + r
        inner = s * inner
        inner = inner + e * _LN2_LO
        log_m = f - (hf2 - inner)
        out = e * _LN2_HI + log_m  # e * _LN2_HI exact
    out = np.where(x == 0, -np.inf, out)
    out = np.where(x == np.inf, np.inf, out)
    return np.where(x < 0, np.nan, out)


def log(x):
    """Natural log; log(0) = -inf (-0.0 too), negative -> NaN, inf -> inf. Within 1 ulp (tested)."""
    (a,), out = _args(x)
    return out(_log(a))


def hypot(x, y):
    """sqrt(x*x + y*y): within 1 ulp, no overflow/underflow guard (inputs well inside 1e150)."""
    (a, b), out = _args(x, y)
    s = a * a
    s = s + b * b
    return out(np.sqrt(s))


# --------------------------------------------------------------------------- sums of products


def matmul(a, b):
    """a @ b for a [..., K] and b [K] or [K, N], summed over K strictly in index order with
    separate multiplies and adds (np.cumsum is a left-to-right running sum), unlike BLAS."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if b.ndim == 1:
        terms = a * b  # [..., K]
        axis = -1
    else:
        terms = a[..., :, None] * b  # [..., K, N]
        axis = -2
    if terms.shape[axis] == 0:
        return np.sum(terms, axis=axis)  # zeros of the right shape
    return np.take(np.cumsum(terms, axis=axis), -1, axis=axis)


def interp(x, xp, fp):
    """np.interp(x, xp, fp) (default left/right: the end values) for increasing xp, with numpy's
    own formula, slope * (x - xp[j]) + fp[j] with slope = (fp[j+1] - fp[j]) / (xp[j+1] - xp[j]),
    as separate operations: numpy's C loop may be compiled into an FMA (clang contracts by
    default, e.g. macOS arm64 builds); on x86-64 the results are bit-identical to np.interp.
    `fp` may be [K, ...]: each column interpolated as by its own np.interp, sharing the search."""
    x = np.asarray(x, dtype=np.float64)
    xp = np.asarray(xp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    col = (Ellipsis,) + (None,) * (fp.ndim - 1)  # x-shaped arrays against fp's columns
    if xp.size == 1:
        return np.broadcast_to(fp[0], x.shape + fp.shape[1:]).copy()[()]
    j = np.searchsorted(xp, x, side="right") - 1  # xp[j] <= x < xp[j+1], as numpy's binary search
    jc = np.clip(j, 0, xp.size - 2)
    x0, x1, f0, f1 = xp[jc], xp[jc + 1], fp[jc], fp[jc + 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = (f1 - f0) / (x1 - x0)[col]
        y = slope * (x - x0)[col]
        y = y + f0
        nan = np.isnan(y)
        if nan.any():  # numpy's rescue for an infinite slope times 0: measure from the other end
            y2 = slope * (x - x1)[col]
            y2 = y2 + f1
            y2 = np.where(np.isnan(y2) & (f0 == f1), f0, y2)
            y = np.where(nan, y2, y)
    y = np.where((x0 == x)[col], f0, y)
    y = np.where((j < 0)[col], fp[0], np.where((j >= xp.size - 1)[col], fp[-1], y))
    if np.isnan(x).any():
        y = np.where(np.isnan(x)[col], x[col], y)
    return y[()]


# --------------------------------------------------------------------------- random draws


def uniform(rng: np.random.Generator, low: float, high: float, size=None):
    """rng.uniform(low, high, size) for scalar bounds: low + (high - low) * U from the same draws
    (one rng.random() double each), as separate operations. numpy's C `lower + range * U` may be
    contracted into an FMA on some builds (clang's default); on x86-64 the bits are numpy's."""
    low, high = float(low), float(high)
    span = high - low
    if not math.isfinite(span):  # numpy's own checks and exceptions
        raise OverflowError("high - low range exceeds valid bounds")
    if span < 0:
        raise ValueError("high - low < 0")
    return low + span * rng.random(size)  # (size None: Python floats, the same IEEE operations)


def exponential(rng: np.random.Generator, size) -> np.ndarray:
    """Standard exponential draws, -log(1 - U) with U = rng.random(size): numpy's inversion method
    (`standard_exponential(method="inv")`, which uses libm's log1p) with detmath's log, one double
    per value. 1 - U lies in (0, 1], so log(0) is never taken; U = 0 gives 0."""
    return -_log(1.0 - rng.random(size))


def simd_targets() -> tuple[list[str], list[str]]:
    """(the SIMD targets numpy dispatches to, those of them this process uses): what
    `NPY_DISABLE_CPU_FEATURES` can turn off, for the checks that rows do not depend on them."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return list(__cpu_dispatch__), [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
