"""The KL attention loss (KLAL) of Esmaeilkhani & Latecki: a PyTorch reference and an autograd op
over fused Triton kernels (linebench/kernels/klal.py). The maths and the API: docs/klal.md.

For each row r (one selected query position of one sample):
  a_h  = softmax_j(scale * q[r, h] . k[b, h // (H / H_kv), off_r + j]),   j < N (the visual keys)
  Q    = mean_h a_h
  loss = sum_j P_j (log P_j - log Q_j),  0 log 0 = 0
Gradients flow to q and k, not to the target P.

The keys may be the model's whole key tensor [B, H_kv, L, D]: `offsets[r]` says where row r's
visual tokens start and `batch_index[r]` which sample it reads (default: row r reads sample r);
nothing is copied, the kernels read the strided view.
"""

from __future__ import annotations

import math
import os

import torch

from .errors import LinebenchError

REDUCTIONS = ("mean", "sum", "none")
BACKENDS = ("auto", "triton", "torch")


class KLALError(LinebenchError, ValueError):
    """Inputs the loss cannot be computed from (shapes, targets, offsets)."""


def _check(q, k, target, offsets, batch_index, reduction, validate):
    if reduction not in REDUCTIONS:
        raise KLALError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if q.dim() != 3:
        raise KLALError(f"q must be [rows, heads, head_dim], got shape {tuple(q.shape)}")
    if k.dim() != 4:
        raise KLALError(f"k must be [batch, kv_heads, tokens, head_dim], got shape {tuple(k.shape)}")
    if target.dim() != 2:
        raise KLALError(f"target must be [rows, N], got shape {tuple(target.shape)}")
    rows, heads, dim = q.shape
    batch, kv_heads, tokens, kdim = k.shape
    n = target.shape[1]
    if n == 0:
        raise KLALError("target has N = 0 visual tokens: nothing to attend to")
    if target.shape[0] != rows:
        raise KLALError(f"target has {target.shape[0]} rows, q has {rows}")
    if kdim != dim:
        raise KLALError(f"q and k head dims differ: {dim} vs {kdim}")
    if kv_heads == 0 or heads % kv_heads:
        raise KLALError(f"query heads ({heads}) must be a multiple of key heads ({kv_heads})")
    if batch_index is None and batch != rows:
        raise KLALError(f"k has batch {batch} but there are {rows} rows: pass batch_index to map rows to samples")
    if offsets is None and tokens != n:
        raise KLALError(f"k has {tokens} tokens but target has N = {n}: pass offsets to select the visual keys")
    if not (q.device == k.device == target.device):
        raise KLALError(f"q, k and target must be on one device, got {q.device}, {k.device}, {target.device}")
    for name, idx in (("offsets", offsets), ("batch_index", batch_index)):
        if idx is not None and (idx.shape != (rows,) or idx.dtype not in (torch.int32, torch.int64)):
            raise KLALError(f"{name} must be an integer tensor of shape [{rows}], got {idx.dtype} {tuple(idx.shape)}")
    if offsets is not None and rows and bool(((offsets < 0) | (offsets + n > tokens)).any()):
        raise KLALError(f"offsets must keep every row's {n} visual keys inside the {tokens} key tokens")
    if batch_index is not None and rows and bool(((batch_index < 0) | (batch_index >= batch)).any()):
        raise KLALError(f"batch_index must lie in 0..{batch - 1}")
    if validate:
        t = target.detach().float()
        if bool((t < 0).any()):
            bad = int((t < 0).any(1).nonzero()[0])
            raise KLALError(f"target row {bad} has negative entries")
        sums = t.sum(1)
        off = (sums - 1).abs() > 1e-3
        if bool(off.any()):
            bad = int(off.nonzero()[0])
            raise KLALError(f"target row {bad} sums to {float(sums[bad]):.6g}, not 1")


def _index(offsets, batch_index, rows, device):
    off = torch.zeros(rows, dtype=torch.int32, device=device) if offsets is None else offsets.to(device=device, dtype=torch.int32)
    bidx = torch.arange(rows, dtype=torch.int32, device=device) if batch_index is None else batch_index.to(device=device, dtype=torch.int32)
    return off.contiguous(), bidx.contiguous()


def _reduce(per_row, reduction):
    if reduction == "none":
        return per_row
    return per_row.sum() if reduction == "sum" else per_row.mean()


def klal_reference(q, k, target, *, scale=None, reduction="mean", offsets=None, batch_index=None, validate=False):
    """Plain PyTorch (fp32) KLAL: the definition the kernels are tested against; any device."""
    _check(q, k, target, offsets, batch_index, reduction, validate)
    rows, heads, dim = q.shape
    n = target.shape[1]
    scale = dim**-0.5 if scale is None else scale
    off, bidx = _index(offsets, batch_index, rows, q.device)
    cols = off.long()[:, None] + torch.arange(n, device=q.device)  # [R, N]
    keys = k[bidx.long()[:, None], :, cols]  # [R, N, H_kv, D]
    keys = keys.permute(0, 2, 1, 3).float().repeat_interleave(heads // k.shape[1], dim=1)  # [R, H, N, D]
    s = torch.einsum("rhd,rhnd->rhn", q.float(), keys) * scale
    log_a = torch.log_softmax(s, dim=-1)
    log_q = torch.logsumexp(log_a, dim=1) - math.log(heads)  # head mean, in log space
    p = target.detach().float()
    per_row = torch.where(p > 0, p * (torch.log(torch.where(p > 0, p, 1.0)) - log_q), 0.0).sum(-1)
    return _reduce(per_row, reduction)


# --------------------------------------------------------------------------- the fused op


def triton_available(device: torch.device) -> bool:
    """Kernels run on CUDA, or on CPU under the Triton interpreter (TRITON_INTERPRET=1 set before import)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return device.type == "cuda" or (device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")


def _blocks(heads, kv_heads, dim, n):
    import triton

    group = heads // kv_heads
    block_g = max(16, triton.next_power_of_2(group))
    block_d = max(16, triton.next_power_of_2(dim))
    block_n = max(16, min(64 if block_d > 64 else 128, triton.next_power_of_2(n)))
    return group, block_g, block_n, block_d


class _KLAL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, target, off, bidx, scale, atomic):
        from .kernels import klal as kern

        rows, heads, dim = q.shape
        kv_heads, n = k.shape[1], target.shape[1]
        group, block_g, block_n, block_d = _blocks(heads, kv_heads, dim, n)
        ieee = q.dtype == torch.float32
        lse = torch.empty(rows, heads, dtype=torch.float32, device=q.device)
        nblocks = -(-n // block_n)
        logq = torch.empty(rows, n, dtype=torch.float32, device=q.device)
        part = torch.empty(rows, nblocks, dtype=torch.float32, device=q.device)
        common = dict(H=heads, G=group, BLOCK_G=block_g, BLOCK_N=block_n, BLOCK_D=block_d, IEEE=ieee)
        qs, ks, ps = q.stride(), k.stride(), target.stride()
        kern._lse[(rows, kv_heads)](q, k, bidx, off, lse, scale, n, dim, *qs, *ks, **common)
        kern._logq[(rows, nblocks)](q, k, target, bidx, off, lse, logq, part, scale, n, dim, nblocks, *qs, *ks, *ps, HKV=kv_heads, **common)
        ctx.save_for_backward(q, k, target, off, bidx, lse, logq)
        ctx.scale, ctx.atomic = scale, atomic
        return part.sum(1)

    @staticmethod
    def backward(ctx, grad_rows):
        from .kernels import klal as kern

        q, k, target, off, bidx, lse, logq = ctx.saved_tensors
        rows, heads, dim = q.shape
        kv_heads, n = k.shape[1], target.shape[1]
        group, block_g, block_n, block_d = _blocks(heads, kv_heads, dim, n)
        common = dict(H=heads, G=group, BLOCK_G=block_g, BLOCK_N=block_n, BLOCK_D=block_d, IEEE=q.dtype == torch.float32)
        qs, ks, ps = q.stride(), k.stride(), target.stride()
        c = torch.empty(rows, heads, dtype=torch.float32, device=q.device)
        kern._colsum[(rows, kv_heads)](q, k, target, bidx, off, lse, logq, c, ctx.scale, n, dim, *qs, *ks, *ps, **common)
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=torch.float32 if ctx.atomic else k.dtype, device=k.device)
        gout = grad_rows.float().contiguous()
        kern._grad[(rows, kv_heads)](
            q, k, target, bidx, off, lse, logq, c, gout, dq, dk, ctx.scale, n, dim,
            *qs, *ks, *ps, *dq.stride(), *dk.stride(), ATOMIC=ctx.atomic, **common,
        )  # fmt: skip
        return dq, dk.to(k.dtype), None, None, None, None, None


def klal_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    target: torch.Tensor,
    *,
    scale: float | None = None,
    reduction: str = "mean",
    offsets: torch.Tensor | None = None,
    batch_index: torch.Tensor | None = None,
    validate: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """KL(P || mean_h softmax(scale q_h . k)) per row, reduced (see the module docstring).

    q: [R, H, D] selected query rows (post-RoPE); k: [B, H_kv, L, D] keys (post-RoPE), any strides;
    target: [R, N] rows of P; offsets: [R] first visual token of each row in k (default 0, L = N);
    batch_index: [R] sample of each row (default r, B = R). fp32, fp16 or bf16; computed in fp32,
    returned in fp32. `validate=True` also checks every target row is >= 0 and sums to 1.
    backend: "triton" (fused kernels; CUDA, or CPU under TRITON_INTERPRET=1), "torch" (the
    reference) or "auto" (triton where it runs)."""
    if backend not in BACKENDS:
        raise KLALError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    _check(q, k, target, offsets, batch_index, reduction, validate)
    use_triton = backend == "triton" or (backend == "auto" and triton_available(q.device))
    if backend == "triton" and not triton_available(q.device):
        raise KLALError("the triton backend needs a CUDA device, or TRITON_INTERPRET=1 set before import on CPU")
    if not use_triton:
        return klal_reference(q, k, target, scale=scale, reduction=reduction, offsets=offsets, batch_index=batch_index)
    rows, _, dim = q.shape
    scale = dim**-0.5 if scale is None else float(scale)
    off, bidx = _index(offsets, batch_index, rows, q.device)
    # several rows reading one sample's keys write its dk concurrently: accumulate atomically
    atomic = batch_index is not None and bool(torch.unique(bidx).numel() < rows)
    per_row = _KLAL.apply(q, k, target.detach(), off, bidx, scale, atomic)
    return _reduce(per_row, reduction)
