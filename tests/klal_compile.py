"""Compile the KLAL kernels for a Hopper GPU (sm_90) down to PTX, with no GPU present.

Run by tests/test_klal.py in a subprocess without TRITON_INTERPRET: the interpreter runs the
kernels' Python, this checks that the same code also passes Triton's compiler (types, shapes,
constexpr use) for the dtypes the op takes, specialised the way the JIT specialises a real call at
a Qwen2.5-VL-7B shape (contiguous last dimensions: strides of 1 become constants; pointers,
head_dim and the other strides are multiples of 16), and that the atomic dk adds are relaxed (no
memory barrier beside every add). Prints one line per kernel and variant.
"""

import inspect
import multiprocessing
import os
import re
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from linebench.kernels import klal as kernels

FLOAT_BUFFERS = ("P", "LSE", "LOGQ", "PART", "C", "GOUT")
INT_BUFFERS = ("BIDX", "OFF", "LENS")
UNIT_STRIDES = ("sqd", "skd", "spn", "sdqd", "sdkd")  # last dimensions, contiguous
ALIGNED_INTS = ("D", "sqr", "sqh", "skb", "skh", "skn", "spr", "sdqr", "sdqh", "sdkb", "sdkh", "sdkn")


def signature(fn, dtype: str, consts: dict) -> dict:
    sig = {}
    for name in inspect.signature(fn.fn).parameters:
        if name in consts or name in UNIT_STRIDES:
            sig[name] = "constexpr"
        elif name in ("Q", "K", "DQ"):
            sig[name] = "*" + dtype
        elif name == "DK":
            sig[name] = "*fp32" if consts["ATOMIC"] or consts["PER_ROW"] else "*" + dtype
        elif name in INT_BUFFERS:
            sig[name] = "*i32"
        elif name in FLOAT_BUFFERS:
            sig[name] = "*fp32"
        else:
            sig[name] = "fp32" if name == "scale" else "i32"
    return sig


def _ordered(ptx: str) -> list[str]:
    """Memory ordering on the global atomics: membar/fence.sc barriers, or atomics with acquire or
    release semantics (the fence.proxy.async/fence.sync of Hopper's matmuls are not about them)."""
    return sorted(set(re.findall(r"membar\.\w+|fence\.(?:sc|acq_rel)\.\w+|(?:atom|red)\.global[\w.]*\.(?:acq_rel|release|acquire)\b[\w.]*", ptx)))


def compile_one(job: tuple[str, bool, bool, str]) -> tuple[bool, str]:
    """(ok, report line) for one kernel and variant."""
    dtype, atomic, per_row, fn_name = job
    fn = getattr(kernels, fn_name)
    consts = dict(H=28, G=7, HKV=4, BLOCK_G=16, BLOCK_N=64, BLOCK_D=128, IEEE=dtype == "fp32", ATOMIC=atomic, PER_ROW=per_row, SEM="relaxed")
    params = list(inspect.signature(fn.fn).parameters)
    constexprs = {(params.index(k),): v for k, v in consts.items() if k in params}
    constexprs.update({(params.index(k),): 1 for k in UNIT_STRIDES if k in params})
    sig = signature(fn, dtype, consts)
    attrs = {(i,): [["tt.divisibility", 16]] for i, k in enumerate(params) if sig[k].startswith("*") or k in ALIGNED_INTS}
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs)
    name = f"{fn.fn.__name__} {dtype} atomic={atomic} per_row={per_row}"
    try:
        ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["ptx"]
    except Exception as e:  # report every failure, then fail
        return False, f"{name}: FAILED {type(e).__name__}: {e}"
    if atomic:
        if _ordered(ptx) or "red." not in ptx and "atom." not in ptx:
            return False, f"{name}: FAILED the dk adds are not relaxed atomics ({', '.join(_ordered(ptx)) or 'no red/atom'})"
        # the check can fail: the same kernel with the default (acq_rel) order has barriers
        strict = ASTSource(fn=fn, signature=sig, constexprs={**constexprs, (params.index("SEM"),): "acq_rel"}, attrs=attrs)
        if not _ordered(triton.compile(strict, target=GPUTarget("cuda", 90, 32)).asm["ptx"]):
            return False, f"{name}: FAILED acq_rel atomics show no ordering in PTX: the relaxed check proves nothing"
    return True, f"{name}: ok ({len(ptx)} chars of PTX)"


def main() -> int:
    variants = [(False, False), (True, False), (False, True)]  # (ATOMIC, PER_ROW)
    jobs = [
        (dtype, atomic, per_row, fn)
        for dtype in ("fp32", "fp16", "bf16")
        for atomic, per_row in variants
        for fn in ("_lse", "_logq", "_colsum", "_grad")
        if fn == "_grad" or not (atomic or per_row)
    ]
    # the compiles are independent: one process per core
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ctx.Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
        results = pool.map(compile_one, jobs, chunksize=1)
    for _, line in results:
        print(line)
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
