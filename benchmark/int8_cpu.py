"""Faster CPU kernels for bitsandbytes' LLM.int8() inference matmul, with bit-identical results.

On the CPU, bitsandbytes (0.45+) runs ``Linear8bitLt`` in inference through two PyTorch-native
kernels of its ``default`` backend:

* ``int8_vectorwise_quant`` quantizes the activations row by row after casting them to float16, with
  the outlier columns (``|x| >= threshold``, 6.0 by default) held back. Half-precision reductions and
  elementwise ops are slow on most x86 CPUs: in the profile of ``benchmark/PERF.md`` this quantization
  costs several times the int8 matmul itself.
* ``int8_mixed_scaled_mm`` runs the int8 matmul (``torch._int_mm`` where the CPU has AVX-512; else a
  float32 matmul of the int8 values, converting the whole weight to float32 on every call), rescales,
  and adds the outlier columns back in the input's precision.

The kernels below compute the same numbers with fewer and cheaper ops: the float16 values are
widened to float32 once (exact), reductions and scaling run in float32 in the same order as
bitsandbytes' own code (so every rounding is the same), ``amax`` replaces ``max`` (no indices), and,
where bitsandbytes falls back to a float32 matmul, each weight's float32 copy is kept instead of
rebuilt per call (the int8 products and sums are the same numbers). ``tests/test_int8_cpu.py``
checks the outputs against bitsandbytes' kernels bit for bit, on both matmul paths.

:func:`install` registers them for the CPU dispatch key through ``torch.library`` (the mechanism
bitsandbytes' own backends use); CUDA and other devices keep bitsandbytes' kernels, and
:func:`uninstall` restores them on the CPU. ``benchmark.perf`` measures the
difference (variant ``stock-int8``) and ``run_all --int8-kernels stock`` turns them off.
"""

from __future__ import annotations

import torch

_library = None   # the torch.library.Library holding the registrations while installed
# Where bitsandbytes multiplies int8 with torch._int_mm on the CPU (its cpu backend's own condition).
_INT_MM = torch.backends.cpu.get_cpu_capability() == "AVX512"


_ROUNDER = 12582912.0   # 1.5 * 2**23


def int8_vectorwise_quant(A: torch.Tensor, threshold: float = 0.0):
    """bitsandbytes' ``int8_vectorwise_quant`` (default kernel) computed in float32 from the same float16 values."""
    A32 = A.float()                      # every float16 value is exact in float32
    absA = A32.abs()
    outlier_cols = None
    if threshold > 0.0:
        outliers = absA >= threshold
        outlier_cols = torch.argwhere(outliers.any(dim=0)).view(-1)
        if outlier_cols.numel():
            absA = absA.masked_fill(outliers, 0)
            A32 = A32.masked_fill(outliers, 0)
    row_stats = absA.amax(dim=1)         # the same maxima bitsandbytes takes in float16, then widens
    # float16 * float32 promotes to float32 in bitsandbytes' code too: the same products and rounding
    scaled = A32 * (127.0 / row_stats.unsqueeze(-1))
    # torch.round (half to even) of |x| <= 127, as two float32 additions: adding 1.5 * 2**23 leaves no
    # fraction bits, and IEEE addition rounds half to even; aten::round is not vectorized on the CPU
    out_row = ((scaled + _ROUNDER) - _ROUNDER).to(torch.int8)
    if A.numel() // A.shape[-1] > 1 and outlier_cols is not None and outlier_cols.numel():
        out_row[:, outlier_cols] = 0
    return out_row, row_stats, outlier_cols


def _int8_matmul(CA: torch.Tensor, CB: torch.Tensor) -> torch.Tensor:
    if _INT_MM:
        return torch._int_mm(CA, CB.t())
    # bitsandbytes' fallback multiplies the int8 values as float32: the same, with the weight converted once
    Bf = getattr(CB, "_float32_copy", None)
    if Bf is None:
        Bf = CB._float32_copy = CB.float()
    return torch.matmul(CA.float(), Bf.t()).to(torch.int32)


def int8_mixed_scaled_mm(A, CA, CB, SCA, SCB, outlier_cols=None, bias=None):
    """bitsandbytes' ``int8_mixed_scaled_mm`` (default kernel, with its int8 matmul and dequantization inlined)."""
    out = _int8_matmul(CA.view(-1, CA.shape[-1]), CB)
    out = out * (SCA.reshape(-1).unsqueeze(-1) * SCB.reshape(-1).unsqueeze(0)) * 6.200124e-05
    if bias is not None:
        out += bias
    out = out.to(A.dtype)
    if outlier_cols is not None and outlier_cols.numel():
        subA = A.index_select(1, outlier_cols)
        subB = (CB.index_select(1, outlier_cols) * SCB.view(-1, 1) * 7.874015718698502e-3).to(A.dtype).t()
        out = out.addmm(subA, subB)
    else:
        subA = torch.empty(0, device=A.device, dtype=A.dtype)
    return out, subA


def install() -> bool:
    """Register the kernels for the CPU (idempotent). False when bitsandbytes is not importable."""
    global _library
    if _library is not None:
        return True
    try:
        import bitsandbytes  # noqa: F401  (defines the ops)
    except ImportError:
        return False
    lib = torch.library.Library("bitsandbytes", "IMPL")
    lib.impl("int8_vectorwise_quant", int8_vectorwise_quant, "CPU")
    lib.impl("int8_mixed_scaled_mm", int8_mixed_scaled_mm, "CPU")
    _library = lib
    return True


def uninstall() -> None:
    """Back to bitsandbytes' own kernels."""
    global _library
    if _library is not None:
        _library._destroy()
        _library = None


def installed() -> bool:
    return _library is not None
