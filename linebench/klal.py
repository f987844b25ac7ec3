"""The KL attention loss (KLAL) of Esmaeilkhani & Latecki: a PyTorch reference and an autograd op
over fused Triton kernels (linebench/kernels/klal.py). The maths and the API: docs/klal.md.

For each row r (one selected query position of one sample):
  a_h  = softmax_j(scale * q[r, h] . k[b, h // (H / H_kv), off_r + j]),   j < N_r (the visual keys)
  Q    = mean_h a_h
  loss = sum_j P_j (log P_j - log Q_j),  0 log 0 = 0
Gradients flow to q and k, not to the target P.

The keys may be the model's whole key tensor [B, H_kv, L, D]: `offsets[r]` says where row r's
visual tokens start, `batch_index[r]` which sample it reads (default: row r reads sample r) and
`lengths[r]` how many visual tokens it has (default: all N columns of `target`; rows of different
image sizes then share one call, their target rows zero-padded to the longest); nothing is copied,
the kernels read the strided view.
"""

from __future__ import annotations

import contextlib
import math
import os

import torch

from .errors import LinebenchError

REDUCTIONS = ("mean", "sum", "none")
ATOMIC_SEM = "relaxed"  # memory order of the dk atomic adds ("acq_rel" only to measure what relaxed saves)
BACKENDS = ("auto", "triton", "torch")


class KLALError(LinebenchError, ValueError):
    """Inputs the loss cannot be computed from (shapes, targets, offsets)."""


def _check(q, k, target, offsets, batch_index, lengths, reduction, validate, check_indices=True):
    if reduction not in REDUCTIONS:
        raise KLALError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if q.dim() != 3:
        raise KLALError(f"q must be [rows, heads, head_dim], got shape {tuple(q.shape)}")
    if k.dim() != 4:
        raise KLALError(f"k must be [batch, kv_heads, tokens, head_dim], got shape {tuple(k.shape)}")
    if target.dim() != 2:
        raise KLALError(f"target must be [rows, N], got shape {tuple(target.shape)}")
    if q.dtype != k.dtype or not q.dtype.is_floating_point:
        raise KLALError(f"q and k must share one floating dtype (float32, float16 or bfloat16 for the kernels), got {q.dtype} and {k.dtype}")
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
    for name, idx in (("offsets", offsets), ("batch_index", batch_index), ("lengths", lengths)):
        if idx is not None and (idx.shape != (rows,) or idx.dtype not in (torch.int32, torch.int64)):
            raise KLALError(f"{name} must be an integer tensor of shape [{rows}], got {idx.dtype} {tuple(idx.shape)}")
    # The index checks read device tensors (a host sync each); a caller that built the indices on
    # the host and checked them there (the capture) passes check_indices=False.
    if check_indices and rows:
        span = n if lengths is None else lengths
        if lengths is not None and bool(((lengths < 1) | (lengths > n)).any()):
            raise KLALError(f"lengths must lie in 1..{n} (the target's columns)")
        if offsets is not None and bool(((offsets < 0) | (offsets + span > tokens)).any()):
            raise KLALError(f"offsets must keep every row's visual keys inside the {tokens} key tokens")
        if batch_index is not None and bool(((batch_index < 0) | (batch_index >= batch)).any()):
            raise KLALError(f"batch_index must lie in 0..{batch - 1}")
    if validate:
        t = target.detach().float()
        bad_rows = (~torch.isfinite(t)).any(1)
        if bool(bad_rows.any()):
            raise KLALError(f"target row {int(bad_rows.nonzero()[0])} has NaN or infinite entries")
        if bool((t < 0).any()):
            bad = int((t < 0).any(1).nonzero()[0])
            raise KLALError(f"target row {bad} has negative entries")
        if lengths is not None:
            past = torch.arange(n, device=t.device)[None, :] >= lengths.to(t.device)[:, None]
            if bool((t[past] != 0).any()):
                raise KLALError(f"target row {int((past & (t != 0)).any(1).nonzero()[0])} has mass past its length")
        sums = t.sum(1)
        off = (sums - 1).abs() > 1e-3
        if bool(off.any()):
            bad = int(off.nonzero()[0])
            raise KLALError(f"target row {bad} sums to {float(sums[bad]):.6g}, not 1")


def _index(offsets, batch_index, lengths, rows, n, device):
    off = torch.zeros(rows, dtype=torch.int32, device=device) if offsets is None else offsets.to(device=device, dtype=torch.int32)
    bidx = torch.arange(rows, dtype=torch.int32, device=device) if batch_index is None else batch_index.to(device=device, dtype=torch.int32)
    lens = torch.full((rows,), n, dtype=torch.int32, device=device) if lengths is None else lengths.to(device=device, dtype=torch.int32)
    return off.contiguous(), bidx.contiguous(), lens.contiguous()


def _reduce(per_row, reduction):
    if reduction == "none":
        return per_row
    return per_row.sum() if reduction == "sum" else per_row.mean()


def klal_reference(q, k, target, *, scale=None, reduction="mean", offsets=None, batch_index=None, lengths=None, validate=False):
    """Plain PyTorch (fp32) KLAL: the definition the kernels are tested against; any device."""
    _check(q, k, target, offsets, batch_index, lengths, reduction, validate)
    return _reference(q, k, target, scale, reduction, offsets, batch_index, lengths)


def _log_q(q, k, n, scale, offsets, batch_index, lengths):
    """log Q [R, N]: the head mean of each row's attention renormalised over its visual keys (0 past
    a row's length; its P is 0 there)."""
    rows, heads, dim = q.shape
    scale = dim**-0.5 if scale is None else scale
    off, bidx, lens = _index(offsets, batch_index, lengths, rows, n, q.device)
    j = torch.arange(n, device=q.device)
    inside = j[None, :] < lens.long()[:, None]  # [R, N]
    cols = (off.long()[:, None] + j).clamp(max=k.shape[2] - 1)  # [R, N] (past a row's length: any key, masked)
    keys = k[bidx.long()[:, None], :, cols]  # [R, N, H_kv, D]
    keys = keys.permute(0, 2, 1, 3).float().repeat_interleave(heads // k.shape[1], dim=1)  # [R, H, N, D]
    s = torch.einsum("rhd,rhnd->rhn", q.float(), keys) * scale
    s = s.masked_fill(~inside[:, None, :], float("-inf"))
    log_a = torch.log_softmax(s, dim=-1).masked_fill(~inside[:, None, :], 0.0)  # past a row's length: finite
    return torch.logsumexp(log_a, dim=1) - math.log(heads), inside  # head mean, in log space


def visual_attention(q, k, n, *, scale=None, offsets=None, batch_index=None, lengths=None) -> torch.Tensor:
    """Q [R, N] (fp32, no gradient): each row's attention over its visual keys, renormalised there and
    averaged over heads; zero past a row's length. What KLAL compares with P, for diagnostics."""
    with torch.no_grad():
        log_q, inside = _log_q(q, k, n, scale, offsets, batch_index, lengths)
        return log_q.exp() * inside


def _reference(q, k, target, scale, reduction, offsets, batch_index, lengths):
    log_q, _ = _log_q(q, k, target.shape[1], scale, offsets, batch_index, lengths)
    p = target.detach().float()
    per_row = torch.where(p > 0, p * (torch.log(torch.where(p > 0, p, 1.0)) - log_q), 0.0).sum(-1)
    return _reduce(per_row, reduction)


# --------------------------------------------------------------------------- the fused op


def triton_available(device: torch.device, dtype: torch.dtype | None = None) -> bool:
    """Kernels run on CUDA, or on CPU under the Triton interpreter (TRITON_INTERPRET=1 set before
    import), which has no bf16 arithmetic (it returns garbage for bf16 inputs)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1" and dtype != torch.bfloat16


def _blocks(heads, kv_heads, dim, n):
    import triton

    group = heads // kv_heads
    block_g = max(16, triton.next_power_of_2(group))
    block_d = max(16, triton.next_power_of_2(dim))
    block_n = max(16, min(64 if block_d > 64 else 128, triton.next_power_of_2(n)))
    return group, block_g, block_n, block_d


def _device(t: torch.Tensor):
    """Launch on the tensors' own GPU, not the current one (device_map="auto", DDP without set_device)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


class _KLAL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, target, off, bidx, lens, scale, shared):
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
        with _device(q):
            kern._lse[(rows, kv_heads)](q, k, bidx, off, lens, lse, scale, dim, *qs, *ks, **common)
            kern._logq[(rows, nblocks)](
                q, k, target, bidx, off, lens, lse, logq, part, scale, n, dim, nblocks, *qs, *ks, *ps, HKV=kv_heads, **common
            )
        ctx.save_for_backward(q, k, target, off, bidx, lens, lse, logq)
        ctx.scale, ctx.shared = scale, shared
        return part.sum(1)

    @staticmethod
    def backward(ctx, grad_rows):
        from .kernels import klal as kern

        q, k, target, off, bidx, lens, lse, logq = ctx.saved_tensors
        rows, heads, dim = q.shape
        kv_heads, n = k.shape[1], target.shape[1]
        group, block_g, block_n, block_d = _blocks(heads, kv_heads, dim, n)
        common = dict(H=heads, G=group, BLOCK_G=block_g, BLOCK_N=block_n, BLOCK_D=block_d, IEEE=q.dtype == torch.float32)
        qs, ks, ps = q.stride(), k.stride(), target.stride()
        # Rows that share a sample add into its dk: atomically (fast, order not fixed: the last bits
        # vary run to run), or, when torch.use_deterministic_algorithms(True) is on, each row into
        # its own buffer, summed per sample in a fixed order afterwards.
        per_row = ctx.shared and torch.are_deterministic_algorithms_enabled()
        atomic = ctx.shared and not per_row
        c = torch.empty(rows, heads, dtype=torch.float32, device=q.device)
        dq = torch.empty_like(q)
        if per_row:
            dk = torch.zeros(rows, kv_heads, n, dim, dtype=torch.float32, device=k.device)
        else:
            dk = torch.zeros(k.shape, dtype=torch.float32 if atomic else k.dtype, device=k.device)
        gout = grad_rows.float().contiguous()
        with _device(q):
            kern._colsum[(rows, kv_heads)](q, k, target, bidx, off, lens, lse, logq, c, ctx.scale, n, dim, *qs, *ks, *ps, **common)
            kern._grad[(rows, kv_heads)](
                q, k, target, bidx, off, lens, lse, logq, c, gout, dq, dk, ctx.scale, n, dim,
                *qs, *ks, *ps, *dq.stride(), *dk.stride(), ATOMIC=atomic, PER_ROW=per_row, SEM=ATOMIC_SEM, **common,
            )  # fmt: skip
        if per_row:
            full = torch.zeros(k.shape, dtype=torch.float32, device=k.device).transpose(1, 2)  # [B, L, H_kv, D] view
            j = torch.arange(n, device=k.device)
            inside = j[None, :] < lens.long()[:, None]  # [R, N]
            b_idx = bidx.long()[:, None].expand(rows, n)[inside]
            pos = (off.long()[:, None] + j)[inside]
            full.index_put_((b_idx, pos), dk.transpose(1, 2)[inside], accumulate=True)  # deterministic in that mode
            dk = full.transpose(1, 2)
        return dq, dk.to(k.dtype), None, None, None, None, None, None


def klal_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    target: torch.Tensor,
    *,
    scale: float | None = None,
    reduction: str = "mean",
    offsets: torch.Tensor | None = None,
    batch_index: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    validate: bool = False,
    backend: str = "auto",
    shared_samples: bool | None = None,
    check_indices: bool = True,
) -> torch.Tensor:
    """KL(P || mean_h softmax(scale q_h . k)) per row, reduced (see the module docstring).

    q: [R, H, D] selected query rows (post-RoPE); k: [B, H_kv, L, D] keys (post-RoPE), any strides;
    target: [R, N] rows of P; offsets: [R] first visual token of each row in k (default 0, L = N);
    batch_index: [R] sample of each row (default r, B = R); lengths: [R] visual tokens of each row
    (default N; the target row is zero past it). q and k share a dtype (fp32, fp16 or bf16);
    computed in fp32, returned in fp32. `validate=True` also checks every target row is finite,
    >= 0, zero past its length and sums to 1.
    backend: "triton" (fused kernels; CUDA, or CPU under TRITON_INTERPRET=1 for fp32/fp16), "torch"
    (the reference) or "auto" (triton on a GPU, else the reference: never the CPU interpreter).
    Host syncs: `shared_samples` (do rows share a sample? None: found out on the device) and
    `check_indices=False` (the caller checked offsets/lengths/batch_index) let a caller that built
    the indices on the host avoid every sync."""
    if backend not in BACKENDS:
        raise KLALError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    _check(q, k, target, offsets, batch_index, lengths, reduction, validate, check_indices)
    runs = triton_available(q.device, q.dtype)
    if backend == "triton" and not runs:
        why = "the Triton interpreter has no bf16 arithmetic: use fp32/fp16 on CPU, or a GPU" if q.dtype == torch.bfloat16 and q.device.type == "cpu" else (
            "the triton backend needs a CUDA device, or TRITON_INTERPRET=1 set before import on CPU"
        )
        raise KLALError(why)
    # "auto" uses the kernels on a GPU only: on CPU they run in Triton's interpreter (tests), ~10x
    # slower than the reference
    if backend == "torch" or not runs or (backend == "auto" and q.device.type != "cuda"):
        return _reference(q, k, target, scale, reduction, offsets, batch_index, lengths)
    rows, _, dim = q.shape
    scale = dim**-0.5 if scale is None else float(scale)
    off, bidx, lens = _index(offsets, batch_index, lengths, rows, target.shape[1], q.device)
    if shared_samples is None:  # several rows reading one sample's keys write its dk concurrently
        shared_samples = batch_index is not None and bool(torch.unique(bidx).numel() < rows)
    per_row = _KLAL.apply(q, k, target.detach(), off, bidx, lens, scale, bool(shared_samples))
    return _reduce(per_row, reduction)
