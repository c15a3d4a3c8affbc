#!/usr/bin/env python3
"""Derives the polynomial that engine's GELU(erf) kernel uses (engine/kernels/kernels_impl.hpp).

GELU(x) = x * Phi(x) with Phi(x) = 1 - E for x >= 0 and E for x < 0, E = erfc(|x| / sqrt(2)) / 2.
The kernel evaluates ln erfc(a), a = |x| / sqrt(2) in [0, A], as a polynomial in t = 2a/A - 1 and
exponentiates it. This script fits that polynomial (least squares on Chebyshev nodes, converted to
the power basis in t, coefficients rounded to float32), then simulates the kernel in float32 on a
dense grid and prints the worst error against a double reference, in the units of the tests'
tolerance max(2e-7, 2e-6 |ref|). Needs only numpy: python3 tools/fit_gelu_erf.py
"""
from math import erf, erfc, log, sqrt

import numpy as np
import numpy.polynomial.chebyshev as cheb

A = 3.92      # past a = 3.92, erfc(a) / 2 < 2.5e-8: Phi is 0 or 1 to float precision
DEGREE = 10   # degree 10 already leaves the float32 evaluation error as the larger term


def fit():
    nodes = 6000
    a = np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes) * A / 2 + A / 2
    c = cheb.chebfit(a * 2 / A - 1, [log(erfc(v)) for v in a], DEGREE)
    return cheb.cheb2poly(c).astype(np.float32)


def simulate(coef, x):
    x = x.astype(np.float32)
    a_raw = np.abs(x) * np.float32(1 / sqrt(2))
    t = np.minimum(a_raw, np.float32(A)) * np.float32(2 / A) - np.float32(1)
    q = np.full_like(t, coef[-1])
    for k in range(len(coef) - 2, -1, -1):
        q = (q * t + coef[k]).astype(np.float32)
    e = (np.float32(0.5) * np.exp(q.astype(np.float64))).astype(np.float32)
    phi = np.where(x >= 0, np.float32(1) - e, e).astype(np.float32)
    return np.where(a_raw > A, np.where(x > 0, x, np.float32(0)), x * phi).astype(np.float32)


def main():
    coef = fit()
    print("coefficients of t^0 .. t^%d (float32):" % DEGREE)
    for k, v in enumerate(coef):
        print("  t^%-2d %s" % (k, np.format_float_scientific(v, precision=9)))
    grid = np.linspace(-10, 10, 400001)
    ref = np.array([0.5 * v * (1 + erf(v / sqrt(2))) for v in grid])
    err = np.abs(simulate(coef, grid) - ref)
    worst = err / np.maximum(2e-7, 2e-6 * np.abs(ref))
    i = int(np.argmax(worst))
    print("worst error / test tolerance on [-10, 10]: %.3f (x = %.5f, |error| = %.3g)" % (worst[i], grid[i], err[i]))


if __name__ == "__main__":
    main()
