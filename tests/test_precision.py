"""Training precision: what ``auto`` resolves to, and that autocast lowers only the forward's matmuls."""

from __future__ import annotations

import torch

from workers import precision


def test_explicit_precisions_are_kept_and_auto_follows_the_processor():
    cpu = torch.device("cpu")
    assert precision.resolve("fp32", cpu) == "fp32"
    assert precision.resolve("bf16", cpu) == "bf16"
    assert precision.resolve("auto", cpu) == ("bf16" if precision.cpu_has_native_bf16() else "fp32")


def test_bf16_autocast_lowers_matmuls_and_leaves_weights_and_gradients_fp32():
    layer = torch.nn.Linear(8, 4)
    inputs = torch.randn(3, 8)
    with precision.autocast("bf16", torch.device("cpu")):
        lowered = layer(inputs)
    with precision.autocast("fp32", torch.device("cpu")):
        exact = layer(inputs)
    assert lowered.dtype == torch.bfloat16 and exact.dtype == torch.float32
    lowered.float().sum().backward()
    assert layer.weight.dtype == layer.weight.grad.dtype == torch.float32
    torch.testing.assert_close(lowered.float(), exact, rtol=2e-2, atol=2e-2)
