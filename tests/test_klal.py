"""The KLAL op: fused Triton kernels (the interpreter on CPU) against the PyTorch reference."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from linebench.klal import KLALError, klal_loss, klal_reference  # noqa: E402

# Tolerances: the kernels compute in fp32 whatever the input; fp16/bf16 inputs go through fp16/bf16
# matmul inputs in the backward (as flash attention does), hence the looser gradient tolerance.
TOL = {torch.float32: dict(loss=1e-5, grad=1e-4), torch.float16: dict(loss=2e-3, grad=1e-2), torch.bfloat16: dict(loss=1e-2, grad=5e-2)}
# The kernels run where the tensors are: compiled on a GPU, in Triton's interpreter on CPU (which
# has no bf16 arithmetic: bf16 is tested on GPUs only, and refused by the interpreter).
DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEV.type == "cuda" else [])


@pytest.fixture(autouse=True)
def on_the_kernel_device():
    torch.set_default_device(DEV)
    yield
    torch.set_default_device("cpu")


def target(rows: int, n: int, zeros: float = 0.6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(rows, n, generator=g, device="cpu")
    p[torch.rand(rows, n, generator=g, device="cpu") < zeros] = 0
    p[:, 0] += 0.01  # no empty row
    return (p / p.sum(1, keepdim=True)).to(DEV)


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


@pytest.mark.parametrize("dtype", DTYPES)
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads, kv_heads, dim, n", [(4, 2, 16, 300), (28, 4, 128, 150)])  # the second: Qwen2.5-VL-7B's heads
def test_kernels_match_the_reference_over_several_key_blocks(dtype, heads, kv_heads, dim, n):
    """Rows longer than one key block: the running log-sum-exp across blocks, the partial losses
    summed over blocks and dk written for every block (head_dim 128 takes the 64-key blocks)."""
    from linebench.klal import _blocks

    assert n > 2 * _blocks(heads, kv_heads, dim, n)[2]  # three blocks or more
    torch.manual_seed(n + dim)
    q = torch.randn(2, heads, dim).to(dtype)
    k = torch.randn(2, kv_heads, n, dim).to(dtype)
    p = target(2, n, seed=n)
    (l1, dq1, dk1), (l2, dq2, dk2) = both(q, k, p, reduction="none")
    tol = TOL[dtype]
    close(l1, l2, tol["loss"], "loss")
    close(dq1, dq2, tol["grad"], "dq")
    close(dk1, dk2, tol["grad"], "dk")
    assert dk1[:, :, -1].abs().sum() > 0  # the last block's keys got their gradient


@pytest.mark.parametrize("dtype", DTYPES)
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


def test_auto_backend_uses_the_kernels_on_a_gpu_only(monkeypatch):
    """On CPU the kernels run in Triton's interpreter (~10x slower than the reference): "auto"
    never picks it, even with TRITON_INTERPRET=1 set (tests/conftest.py sets it); "triton" does."""
    import linebench.klal as mod

    calls = []
    monkeypatch.setattr(mod._KLAL, "apply", lambda *a: calls.append(1) or mod.klal_reference(a[0], a[1], a[2], reduction="none"))
    q, k, p = torch.randn(2, 2, 16), torch.randn(2, 2, 20, 16), target(2, 20).cpu()
    klal_loss(q, k, p)
    assert calls == []
    klal_loss(q, k, p, backend="triton")
    assert calls == [1]
    if torch.cuda.is_available():
        klal_loss(q.cuda(), k.cuda(), p.cuda())
        assert calls == [1, 1]


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


def test_dtype_and_nan_errors():
    q, k, p = torch.randn(2, 4, 16), torch.randn(2, 2, 20, 16), target(2, 20)
    with pytest.raises(KLALError, match="share one floating dtype"):
        klal_loss(q, k.half(), p)
    bad = p.clone()
    bad[1, 4] = float("nan")
    with pytest.raises(KLALError, match="row 1 has NaN"):
        klal_loss(q, k, bad, validate=True)


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
    assert p.stdout.count(": ok") == 18, p.stdout


def test_rows_of_different_sizes_share_one_call():
    """Dynamic resolution: rows with different visual-token counts, padded to the longest with a
    length each, give exactly what each size gives on its own."""
    torch.manual_seed(7)
    k = torch.randn(3, 2, 60, 16)
    q = torch.randn(4, 4, 16)
    lens = torch.tensor([20, 37, 12, 37])
    offsets = torch.tensor([3, 10, 40, 0])
    batch_index = torch.tensor([0, 1, 2, 1])
    p = torch.zeros(4, 37)
    for r, n in enumerate(lens.tolist()):
        p[r, :n] = target(1, n, seed=r)[0]
    (l1, dq1, dk1), (l2, dq2, dk2) = both(q, k, p, offsets=offsets, batch_index=batch_index, lengths=lens, reduction="none")
    close(l1, l2, 1e-5, "loss")
    close(dq1, dq2, 1e-4, "dq")
    close(dk1, dk2, 1e-4, "dk")
    for r, n in enumerate(lens.tolist()):  # each row alone, unpadded
        alone = klal_reference(q[r : r + 1], k, p[r : r + 1, :n], offsets=offsets[r : r + 1], batch_index=batch_index[r : r + 1], reduction="none")
        close(l1[r : r + 1], alone, 1e-5, f"row {r} alone")
    with pytest.raises(KLALError, match="lengths must lie"):
        klal_loss(q, k, p, offsets=offsets, batch_index=batch_index, lengths=torch.tensor([0, 37, 12, 37]))
    with pytest.raises(KLALError, match="mass past its length"):
        klal_loss(q, k, p, offsets=offsets, batch_index=batch_index, lengths=torch.tensor([10, 37, 12, 37]), validate=True)


def test_fp16_gradients_do_not_underflow_with_a_mean_loss():
    """With the upstream gradient folded in before the fp16 cast, a mean over rows pushed small
    gradients into subnormals (dq relative error 3.7e-2 at this shape); applied after the matmuls
    the error is that of rounding the inputs."""
    torch.manual_seed(8)
    rows, heads, kv, dim, n = 16, 28, 4, 32, 256
    q = torch.randn(rows, heads, dim).half()
    k = torch.randn(rows, kv, n, dim).half()
    p = target(rows, n, zeros=0.9)
    (_, dq1, _), (_, dq2, _) = both(q, k, p, reduction="mean")
    rel = ((dq1.float() - dq2.float()).norm() / dq2.float().norm()).item()
    assert rel < 5e-3, rel


def test_bf16_on_the_interpreter_falls_back_or_is_refused():
    if DEV.type == "cuda":
        pytest.skip("bf16 runs compiled on a GPU (test_kernels_match_the_reference covers it)")
    q, k, p = torch.randn(2, 4, 16).bfloat16(), torch.randn(2, 2, 20, 16).bfloat16(), target(2, 20)
    close(klal_loss(q, k, p, reduction="none"), klal_reference(q, k, p, reduction="none"), 1e-6, "auto = reference")
    with pytest.raises(KLALError, match="no bf16"):
        klal_loss(q, k, p, backend="triton")


def test_host_flags_avoid_every_device_sync():
    """Given whether rows share a sample and with the indices checked by the caller, the op has no
    data-dependent host branch: the reference traces as one graph (torch.compile, fullgraph)."""
    q, k, p = torch.randn(3, 4, 16), torch.randn(2, 2, 30, 16), target(3, 12)
    offsets, batch_index, lens = torch.tensor([0, 5, 9]), torch.tensor([0, 0, 1]), torch.tensor([12, 12, 8])
    p[2, 8:] = 0

    def fn(q, k, p):
        return klal_loss(q, k, p, offsets=offsets, batch_index=batch_index, lengths=lens, backend="torch", shared_samples=True, check_indices=False)

    torch._dynamo.reset()
    close(torch.compile(fn, backend="eager", fullgraph=True)(q, k, p), fn(q, k, p), 1e-6, "compiled")


def _spy_on_grad_launches(monkeypatch) -> list[bool]:
    """PER_ROW of every launch of the dk/dq kernel from now on."""
    import linebench.kernels.klal as kern

    seen, real = [], kern._grad

    class Spy:
        def __getitem__(self, grid):
            def launch(*a, **kw):
                seen.append(kw["PER_ROW"])
                return real[grid](*a, **kw)

            return launch

    monkeypatch.setattr(kern, "_grad", Spy())
    return seen


def test_the_deterministic_path_sums_rows_in_a_fixed_order(monkeypatch):
    torch.manual_seed(9)
    k = torch.randn(2, 2, 30, 16)
    q, p = torch.randn(5, 4, 16), target(5, 12)
    batch_index, offsets = torch.tensor([0, 0, 1, 0, 1]), torch.tensor([3, 3, 10, 5, 0])
    (_, _, dk_ref) = both(q, k, p, offsets=offsets, batch_index=batch_index)[1]
    seen = _spy_on_grad_launches(monkeypatch)
    runs = []
    torch.use_deterministic_algorithms(True)
    try:
        for _ in range(2):
            kk = k.clone().requires_grad_()
            klal_loss(q, kk, p, offsets=offsets, batch_index=batch_index, backend="triton").backward()
            runs.append(kk.grad)
    finally:
        torch.use_deterministic_algorithms(False)
    # the interpreter runs programs one after another, so the atomic path would repeat its bits
    # here too: what shows the fixed order is that each row went to its own buffer
    assert seen == [True, True]
    close(runs[0], dk_ref, 1e-4, "dk")
    assert torch.equal(runs[0], runs[1])
    kk = k.clone().requires_grad_()
    klal_loss(q, kk, p, offsets=offsets, batch_index=batch_index, backend="triton").backward()
    assert seen[-1] is False  # outside deterministic mode: the atomic adds
    close(kk.grad, dk_ref, 1e-4, "dk (atomic)")


def test_given_shared_samples_the_op_reads_no_index_on_the_host(monkeypatch):
    """On the kernels' path, deciding whether rows share a sample reads the indices on the host
    (torch.unique); given shared_samples (and check_indices=False) it does not."""
    q, k, p = torch.randn(3, 4, 16), torch.randn(2, 2, 30, 16), target(3, 12)
    p[2, 8:] = 0  # row 2 is 8 keys long
    kw = dict(offsets=torch.tensor([0, 5, 9]), batch_index=torch.tensor([0, 0, 1]), lengths=torch.tensor([12, 12, 8]), backend="triton", check_indices=False)
    calls, real = [], torch.unique
    monkeypatch.setattr(torch, "unique", lambda *a, **k2: calls.append(1) or real(*a, **k2))
    ref = klal_loss(q, k, p, **kw)
    assert calls  # the control: undecided, it asks
    calls.clear()
    close(klal_loss(q, k, p, shared_samples=True, **kw), ref, 1e-6, "given")
    assert not calls


def test_kernels_launch_on_the_tensors_device():
    from types import SimpleNamespace

    from linebench.klal import _device

    ctx = _device(SimpleNamespace(is_cuda=True, device=torch.device("cuda", 1)))
    assert isinstance(ctx, torch.cuda.device) and ctx.idx == 1
    assert not isinstance(_device(torch.zeros(1, device="cpu")), torch.cuda.device)
