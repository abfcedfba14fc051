"""The integer rules of quantisation-aware training, shared by the numpy trainer (``fhec.sklearn``'s
NeuralNet estimators) and the torch layers (``fhec.torch``): one place, so that neither can drift from
the program ``fhec::onnx::IntegerNetwork`` builds (docs/nn.md).

Everything here is numpy on integers held exactly (int64, or float64 below 2^53).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["signed_width", "budget", "quantize_weights", "acc_range", "rounding", "round_acc", "lookup_tables"]


def signed_width(lo: int, hi: int) -> int:
    """Bits of the smallest signed integer type holding ``lo ..= hi`` (as the IR sizes accumulators)."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1):
        w += 1
    return w


def budget(n_accum_bits: int | None, rounding_bits: int | None, max_abs_input: int) -> int | None:
    """The most ``Σ|q_w|`` of one neuron (or filter) whose accumulator stays within ``n_accum_bits``
    (signed) for inputs of magnitude at most ``max_abs_input``; None: no bound. The largest accumulator
    must not round up past the ``rounding_bits`` kept: room for half a step is left (``rounding_bits``
    None: the accumulator is not rounded, as the output layer's)."""
    if n_accum_bits is None:
        return None
    top = (1 << (n_accum_bits - 1)) - 1
    if rounding_bits is not None and n_accum_bits > rounding_bits:
        top -= 1 << (n_accum_bits - rounding_bits - 1)
    return max(1, top // max(1, int(max_abs_input)))


def quantize_weights(W: np.ndarray, n_w_bits: int, B: int | None, cache: dict | None = None, reuse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights of ``W`` (one row per neuron or filter: a per-row symmetric scale; where a row's
    integers exceed the budget ``B``, the finest coarser scale whose integers fit) and the scales.
    ``cache``: where a budget search leaves its scales (key ``"scales"``); with ``reuse`` they are tried
    first and kept when the integers still fit (the search is most of a step's time on huge layers)."""
    M = (1 << (n_w_bits - 1)) - 1
    if B is not None:
        M = min(M, B)
    A = np.abs(W)
    amax = A.max(axis=1)
    s = np.where(amax > 0, amax / M, 1.0)
    if B is None:
        return np.rint(W / s[:, None]), s
    cached = None if cache is None else cache.get("scales")
    if reuse and cached is not None and cached.shape == s.shape:
        sc = np.maximum(s, cached)
        q = np.rint(W / sc[:, None])
        if (np.abs(q).sum(axis=1) <= B).all():
            return q, sc
    q = np.rint(W / s[:, None])
    l1 = np.abs(q).sum(axis=1)
    over = np.nonzero(l1 > B)[0]
    if over.size:
        # the finest scale whose integers fit the budget (Σ|rint(w/s)| falls as s grows)
        Ao = A[over]
        lo = s[over].copy()
        hi = lo * np.maximum(2.0, 2.0 * l1[over] / B)
        while True:  # (Σ rint(x) ≤ 2·Σx for x ≥ ½: this bracket fits; make sure)
            bad = np.rint(Ao / hi[:, None]).sum(axis=1) > B
            if not bad.any():
                break
            hi = np.where(bad, hi * 2.0, hi)
        for _ in range(16):
            mid = np.sqrt(lo * hi)
            fits = np.rint(Ao / mid[:, None]).sum(axis=1) <= B
            hi = np.where(fits, mid, hi)
            lo = np.where(fits, lo, mid)
        s[over] = hi
        q[over] = np.rint(W[over] / hi[:, None])
    if cache is not None:
        cache["scales"] = s
    return q, s


def acc_range(q: np.ndarray, lo: int, hi: int, padded: bool = False) -> tuple[int, int]:
    """The worst case of ``Σ_j q[r, j]·h_j`` over every row ``r`` and every input ``h_j ∈ lo ..= hi``
    (``padded``: some taps read a zero of padding). As ``IntegerNetwork::build`` computes it."""
    if padded:
        lo, hi = min(lo, 0), max(hi, 0)
    pos, neg = np.clip(q, 0, None), np.clip(q, None, 0)
    amin = int((pos * lo + neg * hi).sum(axis=1).min())
    amax = int((pos * hi + neg * lo).sum(axis=1).max())
    return amin, amax


def rounding(amin: int, amax: int, bits: int) -> tuple[int, int, int]:
    """The fewest low bits to drop from accumulators in ``amin ..= amax`` so that ``bits`` remain
    (signed), and the rounded range ``(lsbs, klo, khi)``."""
    amin = min(amin, -1)
    lsbs = 0
    while True:
        if lsbs == 0:
            klo, khi = amin, amax
        else:
            half = 1 << (lsbs - 1)
            klo, khi = (amin + half) >> lsbs, (amax + half) >> lsbs
        if signed_width(min(klo, -1), khi) <= bits:
            return lsbs, klo, khi
        lsbs += 1


def round_acc(acc: np.ndarray, lsbs: int) -> np.ndarray:
    """The program's exact rounding: ``floor((acc + 2^(lsbs−1)) / 2^lsbs)`` (``acc`` when 0 bits)."""
    if lsbs == 0:
        return acc
    return np.floor((acc + (1 << (lsbs - 1))) / (1 << lsbs))


def lookup_tables(alpha: np.ndarray, beta: np.ndarray, lsbs: int, klo: int, khi: int, f: Callable[[np.ndarray], np.ndarray],
                  lo: float, step: float, n_bits: int) -> np.ndarray:
    """One table per group (neuron or channel) over the rounded accumulator ``klo ..= khi``: the real
    value ``z = alpha·k·2^lsbs + beta``, then ``f``, quantised to ``n_bits`` on the grid
    ``lo + step·i`` and centred (``i − 2^(n_bits−1)``)."""
    k = np.arange(klo, khi + 1, dtype=np.float64)
    acc = k * (1 << lsbs) if lsbs else k
    z = np.asarray(alpha, dtype=np.float64)[:, None] * acc[None, :] + np.asarray(beta, dtype=np.float64)[:, None]
    levels = (1 << n_bits) - 1
    return np.clip(np.rint((f(z) - lo) / step), 0, levels) - (1 << (n_bits - 1))
