"""Frozen-prefix caching: compute the layers a configuration does not train once per example, not once per step.

A configuration that trains nothing below layer k (LoRA on the top two layers, an adapter left out of the lower
layers, a classifier head alone) sends every example through layers 0..k-1 in every step of every epoch, and every
trial of the search with the same frozen base repeats the work. Here the output of layer k-1 is computed once per
example (in eval mode, without gradients), kept, and fed straight into layer k; the lower layers are skipped for the
rest of the search.

What changes and what does not:
- The trained layers see exactly the hidden states the frozen layers produce, except for dropout: the cached
  states are computed in eval mode, so the frozen layers' dropout (0.1 in BERT-type models) no longer perturbs
  them during training. Set ``training.cache_frozen_layers: false`` to train with it, as without the cache.
- The cut layer k is the lowest block holding a trainable parameter; anything trained outside the blocks that runs
  before the first one (prompt tuning's virtual tokens, BitFit on embeddings, a prefix pool) makes k = 0 and
  turns caching off (``first_trained_layer``).
- States are shared across trials with the same frozen base (same bit width, same k). Before a trial reuses them
  it recomputes one cached example and compares: a method that changed a frozen lower layer is caught and the
  cache rebuilt, never silently reused.
- Memory is bounded (``training.frozen_cache_mb``): the least recently used cut is dropped first; examples that do
  not fit are computed on the fly (still without gradients, so still cheaper than training through them).
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from autopeft.models.architectures import layer_container, num_layers

Batch = dict[str, torch.Tensor]


class _Captured(Exception):  # noqa: N818 - control flow, not an error: the forward stops once layer k-1 is done
    def __init__(self, states: torch.Tensor):
        self.states = states


def _layers(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The module that holds the transformer blocks, the attribute name, and the blocks."""
    path = layer_container(model, num_layers(model.config))
    parent_path, _, attribute = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    return parent, attribute, getattr(parent, attribute)


def _hidden(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def first_trained_layer(model: nn.Module, sample: Batch) -> int:
    """The lowest layer k such that nothing trained takes part before layer k (0: cache nothing).

    Trainable parameters inside the blocks are placed by their names (``...layer.3.attention...``): a method may
    keep them in a ParameterDict that is read, never called, so hooks could miss them. Those outside the blocks
    (embeddings, prompt encoders, prefix pools, poolers, heads) are placed by one watched forward pass on
    ``sample``: a module that runs before the first block starts, or that never runs at all (read, not called:
    its place unknown), makes k = 0.
    """
    _, _, layers = _layers(model)
    path = layer_container(model, len(layers))
    inside = re.compile(rf"^{re.escape(path)}\.(\d+)\.")
    cut = len(layers) - 1
    outside: dict[str, nn.Module] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        found = inside.match(name)
        if found:
            cut = min(cut, int(found.group(1)))
        else:
            owner = name.rpartition(".")[0]
            outside[owner] = model.get_submodule(owner) if owner else model
    if not outside or cut == 0:
        return cut

    seen = {"layers started": False, "before": False}
    ran: set[str] = set()
    handles = [layers[0].register_forward_pre_hook(lambda *_: seen.__setitem__("layers started", True))]

    def runs(name: str) -> Callable:
        def hook(*_):
            ran.add(name)
            if not seen["layers started"]:
                seen["before"] = True
        return hook

    try:
        handles += [module.register_forward_pre_hook(runs(name)) for name, module in outside.items()]
        was_training = model.training
        model.eval()
        with torch.no_grad():  # the labels are not needed to see what runs (prompt tuning's tagger refuses them)
            model(**{name: value for name, value in sample.items() if name != "labels"})
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return 0 if seen["before"] or ran != set(outside) else cut


class PrefixStore:
    """Cached layer outputs per (frozen-base key, cut layer, split, precision), per example; bounded in bytes,
    least recently used dropped first."""

    def __init__(self, budget_mb: float):
        self.budget = int(budget_mb * 2**20)
        self.used = 0
        self.entries: OrderedDict[tuple, dict[int, torch.Tensor]] = OrderedDict()

    def entry(self, key: tuple) -> dict[int, torch.Tensor]:
        self.entries.setdefault(key, {})
        self.entries.move_to_end(key)
        return self.entries[key]

    def drop(self, key: tuple) -> None:
        states = self.entries.pop(key, {})
        self.used -= sum(s.numel() * s.element_size() for s in states.values())

    def room_for(self, nbytes: int, keep: tuple) -> bool:
        """Make room for ``nbytes`` by dropping the least recently used other cuts; False if it cannot."""
        for key in list(self.entries):
            if self.used + nbytes <= self.budget:
                break
            if key != keep:
                self.drop(key)
        if self.used + nbytes > self.budget:
            return False
        self.used += nbytes
        return True


def _ambient_precision(device: torch.device) -> str:
    """The precision forward passes run at here and now: states computed under bf16 autocast are cached apart."""
    if torch.is_autocast_enabled(device.type):
        return str(torch.get_autocast_dtype(device.type)).removeprefix("torch.")
    return "float32"


def _autocast_as(precision: str, device: torch.device):
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, precision))


class FrozenPrefix:
    """One trial's view of the cache: states for layer ``cut`` of this model, and a forward that starts there."""

    def __init__(self, model: nn.Module, cut: int, store: PrefixStore, base_key: tuple):
        self.model, self.cut, self.store, self.base_key = model, cut, store, base_key
        self.parent, self.attribute, self.layers = _layers(model)
        self.computed = self.reused = 0

    def _compute(self, batch: Batch) -> torch.Tensor:
        """Layer ``cut - 1``'s output for a batch: eval mode, no gradients, the forward abandoned right after."""
        def capture(module, args, output):
            raise _Captured(_hidden(output).detach())

        was_training = self.model.training
        handle = self.layers[self.cut - 1].register_forward_hook(capture)
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(**{k: v for k, v in batch.items() if k != "labels"})
        except _Captured as captured:
            return captured.states
        finally:
            handle.remove()
            self.model.train(was_training)
        raise RuntimeError(f"layer {self.cut - 1} never ran")

    def states(self, split: str, indices: np.ndarray, batch: Batch) -> torch.Tensor:
        """Padded states (batch, width, hidden) for these examples: cached ones read, missing ones computed."""
        key = (*self.base_key, self.cut, split, _ambient_precision(batch["input_ids"].device))
        cached = self.store.entry(key)
        missing = [row for row, i in enumerate(indices) if int(i) not in cached]
        fresh = {}
        if missing:  # the common case in a warm search is none: then nothing below is paid
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            rows = torch.as_tensor(missing)
            computed = self._compute({k: v[rows] for k, v in batch.items()})
            for position, row in enumerate(missing):
                state = computed[position, : int(lengths[row])].clone()
                fresh[row] = state
                if self.store.room_for(state.numel() * state.element_size(), keep=key):
                    cached[int(indices[row])] = state
            self.computed += len(missing)
        self.reused += len(indices) - len(missing)
        rows = [fresh[row] if row in fresh else cached[int(i)] for row, i in enumerate(indices)]
        padded = pad_sequence(rows, batch_first=True)
        width = batch["input_ids"].shape[1]
        if padded.shape[1] < width:  # the batch is padded beyond its longest example (left padding, fixed width)
            padded = torch.nn.functional.pad(padded, (0, 0, 0, width - padded.shape[1]))
        return padded

    def check_reuse(self, make_batch: Callable[[np.ndarray], Batch]) -> None:
        """Recompute one example an earlier trial cached; if it differs, this base is not that base: rebuild.

        Same bit width and cut should mean the same frozen layers, but a method may touch a frozen lower layer
        without training it (an initialisation that rewrites weights, say); one example's forward pass proves it.
        """
        mine = [key for key in self.store.entries if key[:len(self.base_key) + 1] == (*self.base_key, self.cut)]
        filled = [key for key in mine if self.store.entries[key]]
        if not filled:
            return
        key = filled[0]
        cached = self.store.entries[key]
        index = next(iter(cached))
        batch = make_batch(np.array([index]))
        device = batch["input_ids"].device
        with _autocast_as(key[-1], device):
            fresh = self._compute(batch)[0, : cached[index].shape[0]]
        if not torch.allclose(fresh, cached[index], rtol=1e-4, atol=1e-5):
            for stale in mine:
                self.store.drop(stale)

    @contextmanager
    def starting_at_cut(self, states: torch.Tensor) -> Iterator[None]:
        """Run the model from layer ``cut``: the lower layers are left out and layer ``cut`` receives ``states``."""
        def feed(module, args, kwargs):
            if args:
                return (states, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": states}

        handle = self.layers[self.cut].register_forward_pre_hook(feed, with_kwargs=True)
        setattr(self.parent, self.attribute, nn.ModuleList(list(self.layers)[self.cut:]))
        try:
            yield
        finally:
            setattr(self.parent, self.attribute, self.layers)
            handle.remove()

    def forward(self, split: str, indices: np.ndarray, batch: Batch, **options):
        """The model's output for a batch, computed from layer ``cut`` on (``options``: further keyword arguments
        of the model's forward, such as ``logits_to_keep``)."""
        states = self.states(split, indices, batch)
        with self.starting_at_cut(states):
            return self.model(**batch, **options)
