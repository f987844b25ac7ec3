"""Compile the KLAL kernels for a Hopper GPU (sm_90) down to PTX, with no GPU present.

Run by tests/test_klal.py in a subprocess without TRITON_INTERPRET: the interpreter runs the
kernels' Python, this checks that the same code also passes Triton's compiler (types, shapes,
constexpr use) for the dtypes the op takes. Prints one line per kernel and dtype.
"""

import inspect
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from linebench.kernels import klal as kernels

FLOAT_BUFFERS = ("P", "LSE", "LOGQ", "PART", "C", "GOUT")


def signature(fn, dtype: str, consts: dict) -> dict:
    sig = {}
    for name in inspect.signature(fn.fn).parameters:
        if name in consts:
            sig[name] = "constexpr"
        elif name in ("Q", "K", "DQ"):
            sig[name] = "*" + dtype
        elif name == "DK":
            sig[name] = "*fp32" if consts["ATOMIC"] else "*" + dtype
        elif name in ("BIDX", "OFF"):
            sig[name] = "*i32"
        elif name in FLOAT_BUFFERS:
            sig[name] = "*fp32"
        else:
            sig[name] = "fp32" if name == "scale" else "i32"
    return sig


def main() -> int:
    failures = 0
    for dtype in ("fp32", "fp16", "bf16"):
        for atomic in (False, True):
            consts = dict(H=32, G=4, HKV=8, BLOCK_G=16, BLOCK_N=64, BLOCK_D=128, IEEE=dtype == "fp32", ATOMIC=atomic)
            for fn in (kernels._lse, kernels._logq, kernels._colsum, kernels._grad):
                if atomic and fn is not kernels._grad:
                    continue
                params = list(inspect.signature(fn.fn).parameters)
                src = ASTSource(fn=fn, signature=signature(fn, dtype, consts), constexprs={(params.index(k),): v for k, v in consts.items() if k in params})
                try:
                    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["ptx"]
                    print(f"{fn.fn.__name__} {dtype} atomic={atomic}: ok ({len(ptx)} chars of PTX)")
                except Exception as e:  # report every failure, then fail
                    failures += 1
                    print(f"{fn.fn.__name__} {dtype} atomic={atomic}: FAILED {type(e).__name__}: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
