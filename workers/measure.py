"""Measuring a trial's cost honestly on CPU and GPU.

Peak memory on CPU: torch has no allocator statistics there, so a thread samples the process's resident set every
few milliseconds while the trial runs. Before each trial the C allocator is asked to return freed pages
(``malloc_trim``), otherwise a worker process that ran a large trial would report that trial's footprint for
every later one. On CUDA the allocator's own peak is used.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import time
from collections.abc import Iterator

import psutil
import torch

_MIB = 1024 * 1024


def release_freed_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: nothing to trim, and the sampled peak stays an upper bound
        pass


class PeakMemory:
    """Context manager: ``.peak_mb`` is the highest memory seen while inside it."""

    def __init__(self, device: torch.device, interval_s: float = 0.005):
        self.device = device
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._floor_mb = 0.0  # on CUDA: the peak before a stretch left out (``excluded``)
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / _MIB)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        """Leave a stretch out of the peak on CUDA (a measurement the worker makes for itself, not the trial's
        work): the peak so far is kept, the allocator's peak restarts after it. On CPU the RSS sampler cannot
        tell the stretch apart, and nothing here needs it there (precision is measured on GPUs only)."""
        if self.device.type != "cuda":
            yield
            return
        before = torch.cuda.max_memory_allocated(self.device) / _MIB
        try:
            yield
        finally:
            torch.cuda.reset_peak_memory_stats(self.device)
            self._floor_mb = max(self._floor_mb, before)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb = max(torch.cuda.max_memory_allocated(self.device) / _MIB, self._floor_mb)
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / _MIB)


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
