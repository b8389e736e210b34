"""Mixed precision for a trial's training: bf16 autocast where the processor computes in bf16 natively.

Measured on MiniLM-L6, one thread, on a CPU with AVX-512 BF16: a LoRA training step took 54 ms under bf16 autocast
against 115 ms in fp32 (batch 16, length-grouped), and dev accuracy after 250 steps was the same (bench/trial_speed
has the full comparison). Weights, gradients and optimizer state stay fp32 (autocast only lowers the matmuls'
inputs), so a trial trains and saves the same adapter type. The training forward passes and the evaluations at
early-stopping rungs run at this precision; the final evaluation, whose metric is recorded, always runs in fp32,
so the exported adapter gives exactly the recorded metric under stock inference. Where bf16 is not native (an
AVX2-only CPU emulates it, slowly) ``auto`` keeps fp32.

The flags are not enough either. On an Intel Xeon that reports AVX-512 BF16 but no AMX, oneDNN's bf16 matrix
products ran at half fp32's speed (0.46-0.60x at every shape from 256x384x384 to 4096x1024x1024, one and two
threads) and a MiniLM LoRA step took 783 ms under autocast against 387 ms in fp32. So where the flags promise
bf16, ``auto`` times one matrix product of the model's width in both precisions (``cpu_bf16_speedup``: about 0.1 s,
once per process and width) and takes bf16 only where it is clearly faster (``BF16_MIN_SPEEDUP``).

On a GPU native bf16 is not enough to be faster. Measured on an H200 (bench/README.md, decoders): a 135M decoder at
batch 16 trained 1.8-4.7x *slower* under bf16 autocast than in fp32, because such a small model's step is the
launch of a few thousand small kernels and autocast adds a cast before every matrix product; a large model whose
step is its matrix products gains the other way. So on CUDA ``auto`` times one training step of the trial's own
model and batch in each precision (``faster_precision``) and keeps the faster; the worker remembers the choice per
method and batch size. On a CPU the rule above stands (measured both ways there), and timing steps of a decoder
on 2 cores would cost more than the choice saves.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


# oneDNN instruction-set caps (ONEDNN_MAX_CPU_ISA) under which its bf16 matrix products are emulated: a cap below
# AVX512_CORE_BF16 makes a bf16 processor compute like one without (measured on a MiniLM-sized linear layer with
# AMX-BF16: bf16 3.4x faster than fp32 uncapped, 4.3x slower at AVX512_CORE, ~250x slower at AVX2, where oneDNN
# falls back to reference kernels).
_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"})


@cache
def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX-BF16 in the processor's flags (Linux), unless oneDNN is capped below them; False where
    the flags cannot be read."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if cap in _ISAS_WITHOUT_BF16:
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


# How much faster a bf16 matrix product must be than an fp32 one for autocast to pay on a CPU: autocast adds a cast
# before every product and leaves the element-wise work as it was. Measured speed-ups fall far on either side:
# 0.46-0.60x on Intel's AVX-512 BF16 without AMX, about 2x on AMD's (EPYC, family 25 model 17; a whole MiniLM LoRA
# step there gains 1.24-1.33x, the 135M decoder's 2.0x), about 3.4x with AMX (MiniLM-sized products).
BF16_MIN_SPEEDUP = 1.25


@cache
def cpu_bf16_speedup(width: int = 768, threads: int | None = None) -> float:
    """fp32 time over bf16 time of one ``(256 x width) @ (width x width)`` matrix product on this CPU, at
    ``threads`` torch threads (the current setting when None), the best of five alternating rounds after one
    untimed product each; ``width`` is capped at 1024 to bound the cost (about 0.1 s)."""
    width = max(16, min(int(width), 1024))
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(256, width, generator=generator)
        weight = torch.randn(width, width, generator=generator)
        operands = {dtype: (inputs.to(dtype), weight.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
        best = dict.fromkeys(operands, float("inf"))
        for a, b in operands.values():  # untimed: kernel selection, packing
            torch.mm(a, b)
        for _ in range(5):
            for dtype, (a, b) in operands.items():
                started = time.perf_counter()
                torch.mm(a, b)
                best[dtype] = min(best[dtype], time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


def resolve(requested: str, device: torch.device, measure: Callable[[], str] | None = None,
            width: int = 768) -> str:
    """The precision a trial runs at. ``auto``: on a CPU, bf16 where it is native and a bf16 matrix product of the
    model's ``width`` is measured clearly faster than fp32's, else fp32; on a GPU with bf16, what ``measure``
    finds faster (bf16 when no measurement is offered), else fp32."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            return "fp32"
        return measure() if measure is not None else "bf16"
    if not cpu_has_native_bf16():
        return "fp32"
    return "bf16" if cpu_bf16_speedup(width, torch.get_num_threads()) >= BF16_MIN_SPEEDUP else "fp32"


def model_width(model: torch.nn.Module) -> int:
    """The hidden size of a transformers model (768 where its config names none): the width ``resolve`` times."""
    config = getattr(model, "config", None)
    for name in ("hidden_size", "n_embd", "d_model", "dim"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 768


def faster_precision(model: torch.nn.Module, step_loss: Callable[[str], torch.Tensor], device: torch.device,
                     candidates: tuple[str, ...] = ("fp32", "bf16"), repeats: int = 3) -> tuple[str, dict[str, float]]:
    """The candidate whose forward and backward pass (``step_loss(precision).backward()``) is fastest on
    ``device``, with each one's best time in seconds.

    One untimed pass per candidate first (kernel selection, allocator warm-up), then ``repeats`` rounds that
    alternate the candidates, so a slow moment hurts both. The trial is left as it was: gradients are dropped and
    the random state (dropout) is restored, so a measured trial trains exactly as an unmeasured one would."""
    cuda = [device] if device.type == "cuda" else []

    def timed(precision: str) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        step_loss(precision).backward()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    best = dict.fromkeys(candidates, float("inf"))
    with torch.random.fork_rng(devices=cuda):
        for precision in candidates:
            timed(precision)
        for _ in range(repeats):
            for precision in candidates:
                best[precision] = min(best[precision], timed(precision))
    model.zero_grad(set_to_none=True)
    return min(candidates, key=best.__getitem__), best


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
