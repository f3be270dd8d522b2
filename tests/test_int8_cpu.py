"""benchmark/int8_cpu.py: the faster CPU kernels give bitsandbytes' own numbers, bit for bit."""

from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

from benchmark import int8_cpu  # noqa: E402


@pytest.fixture
def stock_kernels():
    """bitsandbytes' kernels during the test, the previous state after it."""
    was = int8_cpu.installed()
    int8_cpu.uninstall()
    yield
    int8_cpu.install() if was else int8_cpu.uninstall()


def _layer(n_in: int, n_out: int, bias: bool, seed: int):
    torch.manual_seed(seed)
    dense = torch.nn.Linear(n_in, n_out, bias=bias)
    q = bnb.nn.Linear8bitLt(n_in, n_out, bias=bias, has_fp16_weights=False, threshold=6.0)
    q.load_state_dict(dense.state_dict())
    return q.eval()


def _inputs(n_in: int, seed: int) -> list[torch.Tensor]:
    """Decode-like and prefill-like batches; small, large and outlier activations (|x| >= 6, held back in
    float by LLM.int8()), a row of zeros, values that quantize to exact halves (rounding ties)."""
    g = torch.Generator().manual_seed(seed)
    xs = []
    for rows in (1, 3, 16, 70):
        for scale in (0.05, 1.0, 2.5):
            xs.append(torch.randn(rows, 1, n_in, generator=g) * scale)
        x = torch.randn(rows, 1, n_in, generator=g) * 2
        x[..., 7] = 20.0
        x[0, 0, 11] = -9.5
        xs.append(x)
    x = torch.zeros(4, 1, n_in)
    x[1, 0, :8] = torch.tensor([1.0, 0.5, -0.5, 2.0, 1.5, -1.5, 0.25, 3.0])   # 127 * x / 3 hits .5 ties
    x[2, 0, 3] = 7.0                                                        # a row whose only value is an outlier
    xs.append(x)
    return xs


SHAPES = [(64, 96, True), (96, 64, False), (576, 1536, False)]


@pytest.mark.parametrize("n_in,n_out,bias", SHAPES)
def test_the_fast_kernels_give_bitsandbytes_outputs_bit_for_bit(n_in, n_out, bias, stock_kernels):
    layer = _layer(n_in, n_out, bias, seed=n_in)
    xs = _inputs(n_in, seed=n_out)
    with torch.no_grad():
        stock = [layer(x) for x in xs]
        int8_cpu.install()
        fast = [layer(x) for x in xs]
    for i, (a, b) in enumerate(zip(stock, fast)):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)), \
            f"input {i}: {int((a != b).sum())} of {a.numel()} outputs differ"


def test_the_quantization_kernel_equals_bitsandbytes_on_float16(stock_kernels):
    g = torch.Generator().manual_seed(3)
    for rows, scale in [(1, 1.0), (16, 3.0), (33, 0.1)]:
        A = (torch.randn(rows, 200, generator=g) * scale).half()
        A[:, 5] = 12
        want = torch.ops.bitsandbytes.int8_vectorwise_quant.default(A.clone(), 6.0)
        got = int8_cpu.int8_vectorwise_quant(A.clone(), 6.0)
        for w, x in zip(want, got):
            assert torch.equal(w, x)


def test_the_float_matmul_path_keeps_one_float_copy_of_each_weight_and_the_same_products(monkeypatch):
    """CPUs without AVX-512 multiply the int8 values in float32 (bitsandbytes' fallback): the copy is
    made once per weight, and the integer products equal the int8 matmul's."""
    monkeypatch.setattr(int8_cpu, "_INT_MM", False)
    g = torch.Generator().manual_seed(5)
    CA = torch.randint(-127, 128, (16, 576), dtype=torch.int8, generator=g)
    CB = torch.randint(-127, 128, (300, 576), dtype=torch.int8, generator=g)
    first = int8_cpu._int8_matmul(CA, CB)
    copy = CB._float32_copy
    second = int8_cpu._int8_matmul(CA, CB)
    assert CB._float32_copy is copy
    assert first.dtype == torch.int32 and torch.equal(first, second)
    assert torch.equal(first, CA.int() @ CB.int().t())


def _cpu_kernel_registered(op: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"bitsandbytes::{op}", "CPU")


def test_install_registers_for_the_cpu_only_and_uninstall_restores_bitsandbytes(stock_kernels):
    ops = ("int8_vectorwise_quant", "int8_mixed_scaled_mm")
    assert not any(_cpu_kernel_registered(op) for op in ops)
    int8_cpu.install()
    int8_cpu.install()   # idempotent
    assert int8_cpu.installed() and all(_cpu_kernel_registered(op) for op in ops)
    int8_cpu.uninstall()
    assert not int8_cpu.installed() and not any(_cpu_kernel_registered(op) for op in ops)
    out, stats, _ = torch.ops.bitsandbytes.int8_vectorwise_quant.default(torch.ones(2, 8, dtype=torch.float16), 6.0)
    assert out.dtype == torch.int8 and torch.equal(stats, torch.ones(2))
