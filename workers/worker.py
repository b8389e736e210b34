"""A trial worker: holds the base model and the tokenised data, and turns trial requests into measured results.

One worker lives in one process (a Ray actor, or the controller's own process for local runs) and serves many
trials: the base model is loaded once, and each trial works on a copy of it, so no trial sees another's changes.
Everything a trial does that can fail is caught here and returned as a failed result with its reason; only the
death of the process itself is left to the executor.
"""

from __future__ import annotations

import copy
import gc
import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers

from autopeft.errors import TrialFailure
from autopeft.methods import get_method
from autopeft.methods.base import Method, task_head_names, task_head_parameters
from autopeft.models.base import load_base_model, load_tokenizer
from autopeft.models.pooling import applied_pooling, write_pooling
from autopeft.models.quantize import check_compatible, frozen_base_bytes, quantize_base
from autopeft.plugins import Shipment, install
from autopeft.results.chance import eval_targets
from autopeft.search.scheduler import goes_on
from autopeft.search.trial import RungPlan, TrialRequest, TrialResult
from autopeft.spec import ModelSpec
from autopeft.store.predictions import VALUES, decode, encode
from autopeft.tasks.data import TaskData
from autopeft.tasks.user_metrics import measure
from workers.lowered_weights import LoweredWeights
from workers.measure import PeakMemory, Stopwatch, release_freed_memory
from workers.precision import autocast, cpu_bf16_speedup, cpu_has_native_bf16, faster_precision, model_width
from workers.precision import resolve as resolve_precision
from workers.prefix_cache import FrozenPrefix, PrefixStore, first_trained_layer
from workers.tasks import RUNNERS, Evaluation
from workers.training import enable_gradient_checkpointing, train


def reset_task_head(model: torch.nn.Module, seed: int) -> None:
    """Re-draw the randomly initialised task head from the trial's seed, so a trial is reproducible whichever
    worker runs it (the head was drawn once, from an arbitrary state, when the worker loaded the model)."""
    torch.manual_seed(seed)
    for name in task_head_names(model):
        getattr(model, name).apply(model._init_weights)


class Rungs:
    """Evaluates a trial at its rungs and applies the early-stopping rule (a ``go_on`` hook for ``train``).

    The rivals at a rung are the plan's table (the database when the trial started) plus, through the plan's
    board, the points that trials running alongside have posted since; this trial posts its own there too."""

    def __init__(self, plan: RungPlan, evaluate: Callable[[], Evaluation], costs: dict[str, float],
                 number: int = -1):
        self.plan, self.evaluate, self.costs, self.number = plan, evaluate, costs, number
        self.points: list[tuple[int, dict[str, float]]] = []
        self.rivals: dict[int, int] = {}  # rung step -> how many other trials' points the decision saw
        self.last: Evaluation | None = None
        self.stopped_at: int | None = None
        self.seconds = 0.0

    def __call__(self, step: int) -> bool:
        if step not in self.plan.steps:
            return True
        with Stopwatch() as clock:
            self.last = self.evaluate()
        self.seconds += clock.seconds
        point = {n: v for n, v in {**self.last.metrics, **self.costs}.items() if n in self.plan.signs}
        self.points.append((step, point))
        rivals = list(self.plan.table.get(step, []))
        if self.plan.board is not None:
            self.plan.board.post(self.number, step, point)
            rivals += [p for n, p in self.plan.board.read(step).items()
                       if n != self.number and n not in self.plan.known]
        self.rivals[step] = len(rivals)
        if goes_on(point, rivals, self.plan.signs, self.plan.reduction_factor):
            return True
        self.stopped_at = step
        return False


class TrialWorker:
    def __init__(self, model: dict, data: TaskData, threads: int, device: str = "cpu",
                 plugins: Shipment | None = None, own_process: bool = False):
        """``own_process``: the worker is its process's one long-lived tenant (a Ray actor), so what is alive once
        it is loaded may be moved out of the cyclic collector's reach (below)."""
        # First: the driver's run-time metrics and methods (a Ray worker process never ran its register calls).
        install(plugins)
        self.custom_metrics = plugins.measured if plugins is not None else ()
        self.targets = eval_targets(data) if self.custom_metrics else None
        transformers.logging.set_verbosity_error()
        torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model_spec = ModelSpec.model_validate(model)
        self.base = load_base_model(self.model_spec, data.label_names)
        self.data = data = data.for_model(self.base)
        self.pooling = applied_pooling(self.base)
        self.base.requires_grad_(False)
        self.runner = RUNNERS[self.model_spec.task](data, load_tokenizer(self.model_spec), self.device)
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.prefix_store: PrefixStore | None = None
        # (method, base bits, batch size, checkpointing) -> the precision measured faster there, and the seconds each
        # took (workers/precision.py)
        self.precision_timings: dict[tuple[str, int, int, bool], tuple[str, dict[str, float]]] = {}
        self.lowered = LoweredWeights()  # frozen linear weights in the training's autocast dtype, made once
        self._untouched: dict | None = None  # a decoder's base model evaluated as loaded, no adapter
        if own_process:
            # The base model, tokenizer and data live as long as the process. Moving them (and all else alive now)
            # out of the cyclic collector's reach spares every trial's collections (release_freed_memory, run
            # around each trial so that memory is measured from a clean floor) a walk over them: 0.17 s a
            # collection on SmolLM2-135M. Reference counting still frees them; a cycle among them would outlive
            # its last use, which is why a worker sharing its process (in-process runs, tests) does not do this.
            gc.freeze()

    def run(self, request: TrialRequest) -> TrialResult:
        try:
            return self._run(request)
        except TrialFailure as exc:
            return self._failed(request, str(exc))
        except (torch.OutOfMemoryError, MemoryError) as exc:
            return self._failed(request, f"out of memory: {exc}".strip())
        except Exception as exc:  # any other error is the trial's, not the search's
            where = traceback.extract_tb(exc.__traceback__)[-1]
            return self._failed(request, f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})")
        finally:
            release_freed_memory()

    def _calibration_batches(self, seed: int, count: int = 4) -> list[dict]:
        """A few training batches for methods with a data-aware start (drawn from the trial's seed)."""
        order = np.random.default_rng(seed + 7919).permutation(len(self.data.train))
        size = self.training_batch_size
        return [self.runner.train_batch(order[i * size:(i + 1) * size]) for i in range(count)
                if i * size < len(order)]

    def _failed(self, request: TrialRequest, reason: str) -> TrialResult:
        return TrialResult(number=request.number, ok=False, fail_reason=reason, worker=self.identity)

    def _run(self, request: TrialRequest) -> TrialResult:
        method = get_method(request.config["method"])
        training = request.training
        untouched = (self.untouched_reference(training["eval_batch_size"])  # before the trial's clocks start
                     if training.get("untouched_reference", True) else None)
        self.training_batch_size = training["batch_size"]
        if method.requires_zero_weight_decay and training["weight_decay"]:
            raise TrialFailure(f"method {method.name!r} needs training.weight_decay: 0 (decay would move the "
                               "weights it must leave untouched)")
        with PeakMemory(self.device) as memory:
            bits = int(request.config.get("base_bits", 16))
            check_compatible(method.name, method.library, bits, request.config)
            model = quantize_base(self._trial_base(method, request.config, bits), bits)
            reset_task_head(model, request.seed)
            if method.calibrates(request.config):  # most trials need no batches before training: build none
                model = method.build_calibrated(model.to(self.device), request.config,
                                                self._calibration_batches(request.seed))
            else:
                model = method.build(model, request.config).to(self.device)
            self._check_base_untouched()
            if training.get("gradient_checkpointing", False):
                enable_gradient_checkpointing(model)
            trainable, _ = method.count(model)
            total = sum(p.numel() for p in self.base.parameters())
            precision_key = self._precision_key(method.name, bits, training)
            precision = resolve_precision(training.get("precision", "auto"), self.device,
                                          lambda: self._measured_precision(model, precision_key, memory),
                                          width=model_width(self.base))
            with Stopwatch() as train_clock:
                prefix = self._frozen_prefix(model, (bits, precision), training)
                rungs = None if request.rungs is None else Rungs(
                    request.rungs,
                    lambda: self._evaluate_in_training(model, training["eval_batch_size"], prefix, precision),
                    {"trainable_params": float(trainable), "trainable_percent": 100.0 * trainable / total},
                    request.number)
                curve = train(model, self._loss_function(model, prefix, precision), len(self.data.train),
                              steps=request.steps,
                              learning_rate=float(request.config["learning_rate"]), training=training,
                              seed=request.seed, go_on=rungs,
                              lengths=self.data.train.lengths if training.get("group_by_length", True) else None,
                              after_step=lambda step: method.after_step(model, step, request.steps))
            # The final evaluation runs in fp32 whatever the training precision: the recorded metric is then exactly
            # what the saved adapter gives under stock fp32 inference after export.
            with Stopwatch() as eval_clock:
                stopped = rungs is not None and rungs.stopped_at is not None
                evaluation = rungs.last if stopped else self._evaluate(model, training["eval_batch_size"], prefix)
            metrics = evaluation.metrics
        adapter_dir = Path(request.output_dir) / "adapter"
        adapter_dir.mkdir(parents=True, exist_ok=True)
        adapter_bytes = method.save(model, adapter_dir, request.config)
        write_pooling(adapter_dir, self.pooling)  # load_adapter puts the same pooling on a stock base
        measurements = {
            **metrics,
            "trainable_params": float(trainable),
            "trainable_percent": 100.0 * trainable / total,
            "total_params": float(total),
            "peak_memory_mb": memory.peak_mb,
            "train_time_s": train_clock.seconds - (rungs.seconds if rungs else 0.0),
            "eval_time_s": eval_clock.seconds + (rungs.seconds if rungs else 0.0),
            "adapter_bytes": float(adapter_bytes),
            "frozen_base_mb": frozen_base_bytes(model) / 2**20,
        }
        return TrialResult(number=request.number, ok=True, measurements=measurements, adapter_dir=str(adapter_dir),
                           loss_curve=curve, predictions=evaluation.predictions, untouched=untouched,
                           worker=self.identity,
                           rung_points=rungs.points if rungs else [],
                           stopped_at=rungs.stopped_at if rungs else None,
                           execution={"precision": precision, **self._precision_record(precision_key, training),
                                      "pooling": self.pooling,
                                      "frozen_layers": prefix.cut if prefix else 0,
                                      "cached_examples_reused": prefix.reused if prefix else 0,
                                      **({"rung_rivals": rungs.rivals} if rungs else {})})

    def untouched_reference(self, batch_size: int) -> dict | None:
        """For a decoder, the loaded base model's evaluation, measured once in this worker: its metrics, its
        predictions per eval record (answers with each record's summed loss beside them, or for records without
        gold answers the losses alone) and each record's response token count. It is what an adapter must beat to
        have taught the model anything (autopeft/results/untouched_model.py): an instruct model may answer well before
        any training, and a loss has no constant prediction to clear. None for classification and regression, whose
        untrained head predicts nothing meaningful. Public so that a caller can pay this once-per-worker cost
        before it times a trial (bench/llm_adapters/vs_plain.py), as a search pays it with its first trial."""
        if self.runner.name != "causal-lm":
            return None
        if self._untouched is None:
            base = self.base if self.device.type == "cpu" else copy.deepcopy(self.base).to(self.device)
            training = base.training
            try:
                evaluation = self._evaluate(base, batch_size, None)
            finally:
                base.train(training)
            self._untouched = {"metrics": evaluation.metrics, "predictions": evaluation.predictions,
                               "tokens": encode(VALUES, self.runner.response_tokens)}
        return self._untouched

    def _trial_base(self, method: Method, config: dict, bits: int) -> torch.nn.Module:
        """The base model for one trial, a copy of the loaded one so that no trial sees another's changes.

        A method that leaves the base weights as they are (``Method.keeps_base_weights``: it adds modules beside
        them) shares the loaded base's frozen tensors instead: only the module tree and the task head, which every
        trial re-draws and trains, are copied. On SmolLM2-135M that is 0.5 GB of fp32 weights neither copied nor
        held twice per trial. Not on a quantised base (the trial replaces those linear layers) nor off the CPU
        (moving a shared tensor to the device would move the loaded base's)."""
        if bits < 16 or self.device.type != "cpu" or not method.keeps_base_weights(config):
            return copy.deepcopy(self.base)
        head = {id(p) for p in task_head_parameters(self.base).values()}
        shared = {id(p): p for p in self.base.parameters() if id(p) not in head}
        return copy.deepcopy(self.base, memo=shared)

    def _check_base_untouched(self) -> None:
        """A trial that shares the loaded base must not have made any of its weights trainable; if a method's
        ``keeps_base_weights`` were wrong, this stops the trial before training changes the next trial's base."""
        leaked = [name for name, p in self.base.named_parameters() if p.requires_grad]
        if leaked:
            self.base.requires_grad_(False)
            raise RuntimeError(f"building the trial made the shared base's {leaked[0]} trainable (and "
                               f"{len(leaked) - 1} more): its method's keeps_base_weights must be False")

    @staticmethod
    def _precision_key(method: str, bits: int, training: dict) -> tuple[str, int, int, bool]:
        """What the faster precision depends on besides the model: the method, the base's bit width (other
        kernels), the batch size and gradient checkpointing (each shifts the balance of compute and overhead)."""
        return method, bits, int(training["batch_size"]), bool(training.get("gradient_checkpointing", False))

    def _precision_record(self, key: tuple, training: dict) -> dict:
        """For the trial's record: the measurement behind an ``auto`` choice, where one was made (the step times
        on a GPU; on a CPU with bf16 in its flags, how much faster a bf16 matrix product ran)."""
        if training.get("precision", "auto") != "auto":
            return {}
        measured = self.precision_timings.get(key)
        if measured is not None:
            return {"precision_step_s": {name: round(seconds, 4) for name, seconds in measured[1].items()}}
        if self.device.type == "cpu" and cpu_has_native_bf16():
            speedup = cpu_bf16_speedup(model_width(self.base), torch.get_num_threads())  # cached: resolve timed it
            return {"bf16_matmul_speedup": round(speedup, 2)}
        return {}

    def _measured_precision(self, model: torch.nn.Module, key: tuple, memory: PeakMemory) -> str:
        """``precision: auto`` on a GPU: the precision one training step of this trial ran faster at, measured
        once per ``_precision_key`` in this worker (workers/precision.py says why it is measured)."""
        if key not in self.precision_timings:
            batch = self.runner.train_batch(np.arange(min(key[2], len(self.data.train))))

            def step_loss(precision: str) -> torch.Tensor:
                with autocast(precision, self.device):
                    return self.runner.train_loss(model, lambda b, **options: model(**b, **options), batch).float()

            with memory.excluded():  # the timing's fp32 steps are not this trial's training
                self.precision_timings[key] = faster_precision(model, step_loss, self.device)
        return self.precision_timings[key][0]

    def _frozen_prefix(self, model: torch.nn.Module, base_key: tuple, training: dict) -> FrozenPrefix | None:
        """The trial's frozen-prefix cache, or None when it is off or the configuration trains layer 0."""
        if not training.get("cache_frozen_layers", True):
            return None
        cut = first_trained_layer(model, self.runner.train_batch(np.array([0])))
        if cut == 0:
            return None
        if self.prefix_store is None:
            self.prefix_store = PrefixStore(training.get("frozen_cache_mb", 2048))
        prefix = FrozenPrefix(model, cut, self.prefix_store, base_key)
        prefix.check_reuse(getattr(self.runner, "keyed_batch", self.runner.train_batch))
        return prefix

    def _loss_function(self, model: torch.nn.Module, prefix: FrozenPrefix | None, precision: str) -> Callable:
        # what the cache keeps a state of, per batch row: the example, or the runner's own rows (a question's pairs)
        cache_keys = getattr(self.runner, "cache_keys", lambda indices: indices)

        def loss_of(indices: np.ndarray) -> torch.Tensor:
            batch = self.runner.train_batch(indices)
            keys = cache_keys(indices)

            def forward(rows: dict, **options):
                return model(**rows, **options) if prefix is None else prefix.forward("train", keys, rows, **options)

            self.runner.check_before_lowering(model, batch, whole_model=prefix is None)
            # the forward only: backward follows the forward's dtypes; the frozen linear weights are lowered once
            # rather than cast at every forward (workers/lowered_weights.py)
            with autocast(precision, self.device), self.lowered.during(model, precision):
                return self.runner.train_loss(model, forward, batch, whole_model=prefix is None).float()
        return loss_of

    def _evaluate_in_training(self, model: torch.nn.Module, batch_size: int, prefix: FrozenPrefix | None,
                              precision: str) -> Evaluation:
        with autocast(precision, self.device):
            evaluation = self._evaluate(model, batch_size, prefix)
        model.train()
        return evaluation

    def _evaluate(self, model: torch.nn.Module, batch_size: int, prefix: FrozenPrefix | None) -> Evaluation:
        """The task's evaluation plus the user's metrics the search measures, computed from the predictions in
        the form the noise model reads them back (so both see the same values); at a rung as at the end."""
        evaluation = self.runner.evaluate(model, batch_size, prefix)
        if self.custom_metrics:
            evaluation.metrics.update(measure(self.custom_metrics, decode(evaluation.predictions), self.targets))
        return evaluation
