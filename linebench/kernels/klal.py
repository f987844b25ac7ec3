"""Triton kernels of the KL attention loss (the maths: docs/klal.md; the only caller: linebench/klal.py).

Rows r = 0..R-1 each hold one query of H heads, q[r] ([H, D]), the N_r = lens[r] visual keys of
sample b = bidx[r] starting at token off[r] of the key tensor (k[b, g, off[r] + j], j < N_r), and a
target row P[r] ([N_max], zero past N_r). Rows of different N (one image size each) share a launch.
Head h reads key head g = h // G (GQA, G = H / H_kv). All arithmetic is fp32.

  lse[r, h]     = logsumexp_j s[r, h, j],       s = scale * q[r, h] . k[b, g, off + j]
  logQ[r, j]    = logsumexp_h (s - lse)[r, h, j] - log H     (head average in log space: no log 0)
  loss[r]       = sum_j P_j (log P_j - logQ_j),  0 log 0 = 0
  backward, with w = P_j exp(s - lse - logQ_j) (= a_hj P_j / Q_j <= H P_j) and c_h = sum_j w_hj:
  dL/ds[r,h,j]  = (a_hj c_h - w_hj) / H
  The row's upstream gradient, scale and 1/H multiply dq and dk after the matmuls, in fp32: folded
  into ds before an fp16 cast they would push small gradients into subnormals.

Four passes, each a grid over (row, key head) or (row, key block); none keeps an [R, H, N] tensor:
forward `_lse` then `_logq` (stores lse [R, H] and logQ [R, N] for the backward), backward
`_colsum` (c [R, H]) then `_grad` (dq, dk; dk with relaxed atomics when several rows share a
sample, or into a per-row buffer that the caller sums in a fixed order when determinism is asked for).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _load_q(Q, r, g, sqr, sqh, sqd, G: tl.constexpr, D, BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr):
    hg = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    mask = (hg[:, None] < G) & (d[None, :] < D)
    return tl.load(Q + r * sqr + (g * G + hg)[:, None] * sqh + d[None, :] * sqd, mask=mask, other=0.0)


@triton.jit
def _row(BIDX, OFF, LENS, r):
    """Query row r's batch element, the offset of its visual tokens and their count."""
    return tl.load(BIDX + r), tl.load(OFF + r), tl.load(LENS + r)


@triton.jit
def _load_k(K, b, g, off, n, skb, skh, skn, skd, N, D, BLOCK_D: tl.constexpr):
    d = tl.arange(0, BLOCK_D)
    mask = (n[:, None] < N) & (d[None, :] < D)
    return tl.load(K + b * skb + g * skh + (off + n)[:, None] * skn + d[None, :] * skd, mask=mask, other=0.0)


@triton.jit
def _scores(q, k, scale, n, N, IEEE: tl.constexpr):
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(k))
    return tl.where(n[None, :] < N, s * scale, float("-inf"))


@triton.jit
def _load_heads(PTR, r, g, H: tl.constexpr, G: tl.constexpr, BLOCK_G: tl.constexpr):
    """The [BLOCK_G] per-head values (lse, c) of key head g's query heads in row r; 0 past G."""
    hg = tl.arange(0, BLOCK_G)
    return tl.load(PTR + r * H + g * G + hg, mask=hg < G, other=0.0)


@triton.jit
def _log_attention(s, lse, G: tl.constexpr, BLOCK_G: tl.constexpr):
    """log a = s - lse per head; -inf on the padded head rows, so they add nothing anywhere."""
    hg = tl.arange(0, BLOCK_G)
    return tl.where(hg[:, None] < G, s - lse[:, None], float("-inf"))


@triton.jit
def _lse(
    Q, K, BIDX, OFF, LENS, LSE, scale, D,
    sqr, sqh, sqd, skb, skh, skn, skd,
    H: tl.constexpr, G: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr,
):
    r = tl.program_id(0)
    g = tl.program_id(1)
    b, off, N = _row(BIDX, OFF, LENS, r)
    q = _load_q(Q, r, g, sqr, sqh, sqd, G, D, BLOCK_G, BLOCK_D)
    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    acc = tl.zeros([BLOCK_G], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        s = _scores(q, _load_k(K, b, g, off, n, skb, skh, skn, skd, N, D, BLOCK_D), scale, n, N, IEEE)
        m_new = tl.maximum(m, tl.max(s, 1))
        acc = acc * tl.exp(m - m_new) + tl.sum(tl.exp(s - m_new[:, None]), 1)
        m = m_new
    hg = tl.arange(0, BLOCK_G)
    tl.store(LSE + r * H + g * G + hg, m + tl.log(acc), mask=hg < G)


@triton.jit
def _logq(
    Q, K, P, BIDX, OFF, LENS, LSE, LOGQ, PART, scale, NMAX, D, NB,
    sqr, sqh, sqd, skb, skh, skn, skd, spr, spn,
    H: tl.constexpr, HKV: tl.constexpr, G: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    IEEE: tl.constexpr,
):
    r = tl.program_id(0)
    nb = tl.program_id(1)
    b, off, N = _row(BIDX, OFF, LENS, r)
    n = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    m = tl.full([BLOCK_N], float("-inf"), tl.float32)
    acc = tl.zeros([BLOCK_N], tl.float32)
    for g in range(HKV):
        q = _load_q(Q, r, g, sqr, sqh, sqd, G, D, BLOCK_G, BLOCK_D)
        s = _scores(q, _load_k(K, b, g, off, n, skb, skh, skn, skd, N, D, BLOCK_D), scale, n, N, IEEE)
        t = _log_attention(s, _load_heads(LSE, r, g, H, G, BLOCK_G), G, BLOCK_G)
        m_new = tl.maximum(m, tl.max(t, 0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # padded columns: every t is -inf
        acc = acc * tl.exp(m - m_safe) + tl.sum(tl.exp(t - m_safe[None, :]), 0)
        m = m_new
    inside = n < N
    logq = tl.where(inside, tl.where(inside, m, 0.0) + tl.log(tl.where(inside, acc, 1.0)) - tl.log(H * 1.0), 0.0)
    tl.store(LOGQ + r * NMAX + n, logq, mask=inside)
    p = tl.load(P + r * spr + n * spn, mask=inside, other=0.0).to(tl.float32)
    term = tl.where(p > 0, p * (tl.log(tl.where(p > 0, p, 1.0)) - logq), 0.0)
    tl.store(PART + r * NB + nb, tl.sum(term, 0))


@triton.jit
def _colsum(
    Q, K, P, BIDX, OFF, LENS, LSE, LOGQ, C, scale, NMAX, D,
    sqr, sqh, sqd, skb, skh, skn, skd, spr, spn,
    H: tl.constexpr, G: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr,
):
    r = tl.program_id(0)
    g = tl.program_id(1)
    b, off, N = _row(BIDX, OFF, LENS, r)
    hg = tl.arange(0, BLOCK_G)
    q = _load_q(Q, r, g, sqr, sqh, sqd, G, D, BLOCK_G, BLOCK_D)
    lse = _load_heads(LSE, r, g, H, G, BLOCK_G)
    c = tl.zeros([BLOCK_G], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        s = _scores(q, _load_k(K, b, g, off, n, skb, skh, skn, skd, N, D, BLOCK_D), scale, n, N, IEEE)
        p = tl.load(P + r * spr + n * spn, mask=n < N, other=0.0).to(tl.float32)
        logq = tl.load(LOGQ + r * NMAX + n, mask=n < N, other=0.0)
        w = p[None, :] * tl.exp(_log_attention(s, lse, G, BLOCK_G) - logq[None, :])
        c += tl.sum(tl.where(n[None, :] < N, w, 0.0), 1)
    tl.store(C + r * H + g * G + hg, c, mask=hg < G)


@triton.jit
def _grad(
    Q, K, P, BIDX, OFF, LENS, LSE, LOGQ, C, GOUT, DQ, DK, scale, NMAX, D,
    sqr, sqh, sqd, skb, skh, skn, skd, spr, spn, sdqr, sdqh, sdqd, sdkb, sdkh, sdkn, sdkd,
    H: tl.constexpr, G: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr,
    ATOMIC: tl.constexpr, PER_ROW: tl.constexpr, SEM: tl.constexpr = "relaxed",
):
    """dq [R, H, D]; dk into the key-shaped DK (at b, off + j; atomically with ATOMIC), or with
    PER_ROW into a [R, H_kv, N_max, D] buffer at (r, j), for the caller to sum per sample."""
    r = tl.program_id(0)
    g = tl.program_id(1)
    b, off, N = _row(BIDX, OFF, LENS, r)
    hg = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    q = _load_q(Q, r, g, sqr, sqh, sqd, G, D, BLOCK_G, BLOCK_D)
    lse = _load_heads(LSE, r, g, H, G, BLOCK_G)
    c = _load_heads(C, r, g, H, G, BLOCK_G)
    factor = tl.load(GOUT + r) * scale / H  # applied to dq and dk in fp32, after the matmuls
    dq = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        k = _load_k(K, b, g, off, n, skb, skh, skn, skd, N, D, BLOCK_D)
        s = _scores(q, k, scale, n, N, IEEE)
        p = tl.load(P + r * spr + n * spn, mask=n < N, other=0.0).to(tl.float32)
        logq = tl.load(LOGQ + r * NMAX + n, mask=n < N, other=0.0)
        t = _log_attention(s, lse, G, BLOCK_G)
        a = tl.exp(t)
        w = p[None, :] * tl.exp(t - logq[None, :])
        ds = tl.where((n[None, :] < N) & (hg[:, None] < G), a * c[:, None] - w, 0.0)  # H * dL/ds, |ds| <= H
        if IEEE:
            dq += tl.dot(ds, k.to(tl.float32), input_precision="ieee")
            dk = tl.dot(tl.trans(ds), q.to(tl.float32), input_precision="ieee") * factor
        else:
            dq += tl.dot(ds.to(k.dtype), k)
            dk = tl.dot(tl.trans(ds).to(q.dtype), q) * factor
        mask = (n[:, None] < N) & (d[None, :] < D)
        if PER_ROW:
            tl.store(DK + r * sdkb + g * sdkh + n[:, None] * sdkn + d[None, :] * sdkd, dk, mask=mask)
        else:
            ptr = DK + b * sdkb + g * sdkh + (off + n)[:, None] * sdkn + d[None, :] * sdkd
            if ATOMIC:
                # relaxed: the adds need no ordering among themselves (acq_rel, the default, puts a
                # memory barrier beside every add; benchmarks/klal.py times both)
                tl.atomic_add(ptr, dk, mask=mask, sem=SEM)
            else:
                tl.store(ptr, dk.to(DK.dtype.element_ty), mask=mask)
    tl.store(
        DQ + r * sdqr + (g * G + hg)[:, None] * sdqh + d[None, :] * sdqd,
        (dq * factor).to(DQ.dtype.element_ty),
        mask=(hg[:, None] < G) & (d[None, :] < D),
    )
