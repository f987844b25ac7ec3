"""The KLAL op: fused Triton kernels (the interpreter on CPU) against the PyTorch reference."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from linebench.klal import KLALError, klal_loss, klal_reference  # noqa: E402

# Tolerances: the kernels compute in fp32 whatever the input; fp16 inputs go through fp16 matmul
# inputs in the backward (as flash attention does), hence the looser gradient tolerance.
TOL = {torch.float32: dict(loss=1e-5, grad=1e-4), torch.float16: dict(loss=2e-3, grad=1e-2)}


def target(rows: int, n: int, zeros: float = 0.6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(rows, n, generator=g)
    p[torch.rand(rows, n, generator=g) < zeros] = 0
    p[:, 0] += 0.01  # no empty row
    return p / p.sum(1, keepdim=True)


def both(q, k, p, **kw):
    """Loss and (dq, dk) from the kernels and from the reference."""
    out = []
    for fn in (lambda *a, **k2: klal_loss(*a, backend="triton", **k2), klal_reference):
        qq, kk = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
        loss = fn(qq, kk, p, **kw)
        loss.sum().backward()
        out.append((loss.detach(), qq.grad, kk.grad))
    return out


def close(a, b, tol, what):
    a, b = a.float(), b.float()
    err = (a - b).abs().max().item()
    assert err <= tol * max(1.0, b.abs().max().item()), f"{what}: max error {err:.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (4, 2), (8, 2), (8, 1)])
@pytest.mark.parametrize("n", [37, 100])
def test_kernels_match_the_reference(dtype, heads, kv_heads, n):
    torch.manual_seed(heads * 1000 + kv_heads * 100 + n)
    rows, dim = 3, 16
    q = torch.randn(rows, heads, dim).to(dtype)
    k = torch.randn(rows, kv_heads, n, dim).to(dtype)
    p = target(rows, n, seed=n)
    (l1, dq1, dk1), (l2, dq2, dk2) = both(q, k, p, reduction="none")
    tol = TOL[dtype]
    close(l1, l2, tol["loss"], "loss")
    close(dq1, dq2, tol["grad"], "dq")
    close(dk1, dk2, tol["grad"], "dk")
    assert dq1.dtype == dtype and dk1.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_extreme_logits_stay_finite(dtype):
    torch.manual_seed(1)
    q = (torch.randn(2, 4, 32) * 6).to(dtype)  # logits in the hundreds: softmax is one-hot
    k = (torch.randn(2, 2, 50, 32) * 6).to(dtype)
    p = target(2, 50, zeros=0.3)
    (l1, dq1, dk1), (l2, dq2, dk2) = both(q, k, p, reduction="none")
    for t in (l1, dq1, dk1):
        assert torch.isfinite(t).all()
    close(l1, l2, TOL[dtype]["loss"], "loss")
    close(dq1, dq2, TOL[dtype]["grad"], "dq")


def test_loss_is_zero_when_the_target_is_the_attention_and_positive_otherwise():
    torch.manual_seed(2)
    q, k = torch.randn(2, 4, 16), torch.randn(2, 2, 24, 16)
    a = torch.softmax(torch.einsum("rhd,rhnd->rhn", q, k.repeat_interleave(2, 1)) * 16**-0.5, -1).mean(1)
    assert klal_loss(q, k, a, backend="triton", reduction="none").abs().max() < 1e-5
    other = target(2, 24)
    assert (klal_loss(q, k, other, backend="triton", reduction="none") > 1e-3).all()


def test_reductions_and_custom_scale():
    torch.manual_seed(3)
    q, k, p = torch.randn(4, 4, 16), torch.randn(4, 1, 30, 16), target(4, 30)
    rows = klal_loss(q, k, p, backend="triton", reduction="none", scale=0.5)
    assert rows.shape == (4,)
    close(klal_loss(q, k, p, backend="triton", reduction="sum", scale=0.5), rows.sum(), 1e-6, "sum")
    close(klal_loss(q, k, p, backend="triton", scale=0.5), rows.mean(), 1e-6, "mean")
    close(rows, klal_reference(q, k, p, reduction="none", scale=0.5), 1e-5, "scale")
    assert not torch.allclose(rows, klal_loss(q, k, p, backend="triton", reduction="none"))


def test_strided_key_view_with_offsets_copies_nothing_and_matches():
    """Keys as the model holds them ([B, L, H_kv, D] transposed) with the image at a different
    position per sample (left padding)."""
    torch.manual_seed(4)
    batch, length, kv_heads, dim, n = 3, 40, 2, 16, 21
    k_full = torch.randn(batch, length, kv_heads, dim).transpose(1, 2)  # non-contiguous
    offsets = torch.tensor([0, 7, 19])
    q, p = torch.randn(batch, 4, dim), target(batch, n)
    (l1, dq1, dk1), (l2, dq2, dk2) = both(q, k_full, p, offsets=offsets, reduction="none")
    close(l1, l2, 1e-5, "loss")
    close(dk1, dk2, 1e-4, "dk")
    sliced = torch.stack([k_full[b, :, o : o + n] for b, o in enumerate(offsets.tolist())])
    close(l1, klal_reference(q, sliced, p, reduction="none"), 1e-5, "same as sliced keys")
    outside = torch.ones(batch, length, dtype=torch.bool)
    for b, o in enumerate(offsets.tolist()):
        outside[b, o : o + n] = False
    assert dk1.shape == k_full.shape and dk1.transpose(1, 2)[outside].abs().max() == 0


def test_several_rows_reading_one_sample_accumulate_its_key_gradient():
    torch.manual_seed(5)
    k = torch.randn(2, 2, 30, 16)
    q, p = torch.randn(5, 4, 16), target(5, 12)
    batch_index = torch.tensor([0, 0, 1, 0, 1])
    offsets = torch.tensor([3, 3, 10, 5, 0])
    (l1, dq1, dk1), (l2, dq2, dk2) = both(q, k, p, offsets=offsets, batch_index=batch_index, reduction="none")
    close(l1, l2, 1e-5, "loss")
    close(dq1, dq2, 1e-4, "dq")
    close(dk1, dk2, 1e-4, "dk")


def test_target_gets_no_gradient_and_the_loss_is_fp32():
    q, k = torch.randn(2, 2, 16, dtype=torch.float16), torch.randn(2, 2, 20, 16, dtype=torch.float16)
    p = target(2, 20).requires_grad_()
    loss = klal_loss(q.requires_grad_(), k, p, backend="triton")
    assert loss.dtype == torch.float32
    loss.backward()
    assert p.grad is None and q.grad is not None


def test_auto_backend_uses_the_kernels_where_they_run(monkeypatch):
    import linebench.klal as mod

    calls = []
    monkeypatch.setattr(mod._KLAL, "apply", lambda *a: calls.append(1) or mod.klal_reference(a[0], a[1], a[2], reduction="none"))
    q, k, p = torch.randn(2, 2, 16), torch.randn(2, 2, 20, 16), target(2, 20)
    klal_loss(q, k, p)  # TRITON_INTERPRET=1 on CPU (tests/conftest.py)
    assert calls == [1]
    klal_loss(q, k, p, backend="torch")
    assert calls == [1]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(q=(2, 3, 16)), "multiple of key heads"),
        (dict(q=(2, 4, 8)), "head dims differ"),
        (dict(p=(3, 20)), "target has 3 rows"),
        (dict(p=(2, 0)), "N = 0"),
        (dict(k=(2, 2, 25, 16)), "pass offsets"),
        (dict(k=(3, 2, 20, 16)), "pass batch_index"),
        (dict(q=(2, 4)), "q must be"),
    ],
)
def test_shape_errors(change, message):
    shapes = dict(q=(2, 4, 16), k=(2, 2, 20, 16), p=(2, 20))
    shapes.update(change)
    q, k = torch.randn(*shapes["q"]), torch.randn(*shapes["k"])
    p = torch.full(shapes["p"], 1.0 / max(shapes["p"][-1], 1))
    with pytest.raises(KLALError, match=message):
        klal_loss(q, k, p, backend="triton")


def test_target_and_argument_errors():
    q, k = torch.randn(2, 4, 16), torch.randn(2, 2, 20, 16)
    p = target(2, 20)
    bad = p.clone()
    bad[1, 3] = -0.1
    with pytest.raises(KLALError, match="row 1 has negative"):
        klal_loss(q, k, bad, validate=True)
    with pytest.raises(KLALError, match="row 0 sums to 2"):
        klal_loss(q, k, p * torch.tensor([[2.0], [1.0]]), validate=True)
    klal_loss(q, k, p * 2)  # not checked unless asked: validation costs a device sync
    with pytest.raises(KLALError, match="inside the 20 key tokens"):
        klal_loss(q, k, p[:, :10], offsets=torch.tensor([0, 11]))
    with pytest.raises(KLALError, match="reduction"):
        klal_loss(q, k, p, reduction="max")
    with pytest.raises(KLALError, match="backend"):
        klal_loss(q, k, p, backend="cuda")


def test_reference_matches_the_definition_written_out():
    """The reference itself, against the formula computed the long way (loops, no log-space tricks)."""
    torch.manual_seed(6)
    q, k, p = torch.randn(1, 4, 8, dtype=torch.float64), torch.randn(1, 2, 9, 8, dtype=torch.float64), target(1, 9).double()
    a = [torch.softmax(torch.stack([q[0, h] @ k[0, h // 2, j] / math.sqrt(8) for j in range(9)]), 0) for h in range(4)]
    big_q = sum(a) / 4
    expected = sum(float(p[0, j] * (torch.log(p[0, j]) - torch.log(big_q[j]))) for j in range(9) if p[0, j] > 0)
    assert abs(float(klal_reference(q, k, p)) - expected) < 1e-5


def test_kernels_compile_for_hopper(tmp_path):
    """The interpreter runs the kernels' Python; this checks that Triton's compiler also takes them
    (sm_90 PTX for fp32, fp16 and bf16), no GPU needed. Compiled-mode numerics run on a GPU."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    p = subprocess.run([sys.executable, str(Path(__file__).with_name("klal_compile.py"))], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]
    assert p.stdout.count(": ok") == 15, p.stdout
