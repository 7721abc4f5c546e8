"""Compiled decoder layers for training (`train.compile`): torch.compile, inductor's C++ backend on CPU.

Eager PyTorch runs each elementwise operator of a decoder layer as its own pass over memory, with
its own dispatch and autograd node: an RMSNorm is eight of them (casts, square, mean, rsqrt,
products), rotary five per tensor, SwiGLU two, eager attention's scale, mask, fp32 softmax and
cast four more, and backward as many again. Measured on SmolLM2-135M LoRA r8, bf16, batch 8 x 256,
2-core AMD EPYC (benchmarks/train_bench.py --profile): after the fused LoRA linears and the frozen
head's loss, the work that is not a matmul was 34% of a step, most of it these passes and the
Python between them. Inductor fuses them into a few C++ loops per layer, and its partitioner
recomputes cheap elementwise results in backward instead of keeping them: in the same run, 1.16x
the real tokens/s of the same code uncompiled, and a peak RSS ~500 MB lower.

What it costs, and so when it is used:
  compile time  the first training step traces and compiles one decoder layer (all layers of a
                model share the graph; layer 0 gets a second one: its input needs no gradient),
                once per process: 17-25 s on that machine (a few seconds when inductor's cache
                under /tmp already holds it). `auto` compiles only where the run's estimated work
                pays that back: PAYBACK_FLOPS.
  numerics      inductor's fused fp32 reductions round differently from eager's separate ones:
                not bit-identical to an uncompiled run (the first step's loss within ~1e-4
                relative in bf16; tests/train/test_compile.py bounds it); a compiled run is
                deterministic, and a resumed run compiles the same graph (resume stays exact).
  scope         only the training forward and backward (gradients enabled) run compiled;
                validation, generation, scoring and DPO's reference pass run the same layer
                eagerly, so no-grad and KV-cache calls never trigger a recompile.
A layer that fails to compile in forward (no working compiler, an operator inductor lacks) prints
one warning and runs eagerly from then on; summary.json's `compiled` is then false.
Supported (`true` is refused otherwise, `auto` skips): a causal LM, one process, no whole-layer
gradient checkpointing (its saved-tensor hooks and a compiled layer do not mix), no prefix-style
method (prefix tuning feeds each layer a cache), the sft objective (a preference objective's
reference pass runs without gradients, uncompiled, and must round as the policy does). `auto` also needs the CPU and a C++ compiler.
Written here because neither transformers nor peft compiles only the training pass: HF Trainer's
`torch_compile` compiles the whole model, recompiling on every new batch shape (TRL's padding-free
SFT with it: 34.6 tokens/s over a 16-step run against 141 uncompiled, same machine).
"""

from __future__ import annotations

import sys
import types

import torch

from tunelab.config.base import ConfigError

# Estimated training FLOPs (forward + backward matmuls) above which `auto` compiles. The compile
# took 17-25 s on the 2-core EPYC and made SmolLM2 LoRA's step 11-13% faster: paid back after
# ~200 s of training, ~4e13 FLOPs at the ~200 GFLOP/s it reaches there (about 70 steps of
# 8 x 131 tokens, the mean length of the Alpaca demo set). Faster machines reach it sooner in
# FLOPs but compile faster too; tiny test models never reach it.
PAYBACK_FLOPS = 4e13


def unsupported(cfg, world: int, architecture: str | None = None) -> str | None:
    """Why this run cannot compile its layers (None: it can). `architecture`: the loaded model's
    (model.architecture is "auto" unless the config names it)."""
    from tunelab.train.loss import peft_forward

    t = cfg.train
    if (architecture or cfg.model.architecture) == "seq2seq":
        return "seq2seq models"
    if world > 1:
        return "several processes"
    if t.gradient_checkpointing:
        return "train.gradient_checkpointing"
    if peft_forward(t.method):
        return f"method {t.method}"
    if t.objective != "sft":
        # the reference pass has no gradients and runs eagerly: its log-probabilities would round
        # differently from the compiled policy's, a bias in the implicit reward from the first step
        # (measured: a tiny Llama's first DPO loss 0.6952 instead of ln 2)
        return f"objective {t.objective}"
    return None


def check_compile(cfg, world: int, architecture: str | None = None) -> None:
    """`train.compile: true` where it cannot run: refused before any work (and again once the
    model's architecture is known)."""
    if cfg.train.compile is True and (why := unsupported(cfg, world, architecture)):
        raise ConfigError(f"train.compile=true: not supported with {why} (use auto or false)")


def cpp_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU, or None."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except Exception:  # noqa: BLE001 - inductor raises its own error types when none is found
        return None


def estimated_flops(n_params: int, trains_all: bool, tokens_per_step: float, steps: int) -> float:
    """Matmul FLOPs of the run: 2 per parameter per token forward, 2 for the input gradients in
    backward, 2 more for the weight gradients when every weight trains."""
    return (6 if trains_all else 4) * n_params * tokens_per_step * steps


def should_compile(cfg, world: int, device_type: str, work_flops: float, architecture: str = "causal") -> bool:
    setting = cfg.train.compile
    if setting != "auto":
        return setting is True
    return (device_type == "cpu" and unsupported(cfg, world, architecture) is None and work_flops >= PAYBACK_FLOPS
            and cpp_compiler() is not None)


def layer_classes(model) -> set[str]:
    """The decoder layers' class names: the model's own `_no_split_modules` (what FSDP wraps)."""
    for module in model.modules():
        names = getattr(module, "_no_split_modules", None)
        if names:
            return set(names)
    return set()


def _compiled_forward(self, *args, **kwargs):
    cls = type(self)
    if torch.is_grad_enabled() and not cls._compile_failed:
        try:
            return cls._compiled(self, *args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as error:
            # A layer inductor cannot compile (no working compiler, an operator it lacks): that
            # class runs eagerly from now on. A real error in the layer's code raises again below.
            cls._compile_failed = True
            print(f"tunelab: warning: train.compile: {cls.__name__} could not be compiled and runs uncompiled "
                  f"({type(error).__name__}: {str(error).splitlines()[0][:200]})", file=sys.stderr, flush=True)
    return cls._uncompiled_forward(self, *args, **kwargs)


def compiled_layers(model) -> bool:
    """Whether `model` has decoder layers that run compiled (none whose compile failed)."""
    found = False
    for module in model.modules():
        if getattr(type(module), "_compiled", None) is not None:
            if type(module)._compile_failed:
                return False
            found = True
    return found


def _layer_forward(self, *args, **kwargs):
    return type(self)._uncompiled_forward(self, *args, **kwargs)


def _own_code(fn, name: str):
    """`fn` with a code object of its own. Dynamo keeps compiled graphs per code object, at most
    `recompile_limit` (8) of them, then silently runs the code eagerly; transformers wraps many
    families' forward in the same decorator function, so without this two or three families
    trained in one process used up one shared budget and the next ran uncompiled (tested)."""
    code = fn.__code__.replace(co_name=name, co_qualname=name) if hasattr(fn.__code__, "co_qualname") \
        else fn.__code__.replace(co_name=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


_SUBCLASSES: dict[type, type] = {}


def compile_layers(model) -> int:
    """Give each decoder layer of `model` a subclass of its class (same name) whose forward runs
    compiled while gradients are enabled; the number of layers changed."""
    names, n = layer_classes(model), 0
    for module in model.modules():
        cls = type(module)
        if cls.__name__ not in names or getattr(cls, "_compiled", None) is not None:
            continue
        if cls not in _SUBCLASSES:
            # dynamic: one graph for every batch shape (length grouping makes each step's differ)
            _SUBCLASSES[cls] = type(cls.__name__, (cls,), {
                "forward": _compiled_forward, "_uncompiled_forward": cls.forward, "_compile_failed": False,
                "_compiled": staticmethod(torch.compile(_own_code(_layer_forward, f"{cls.__name__}_forward"),
                                                        dynamic=True)),
                "__module__": cls.__module__, "__qualname__": cls.__qualname__})
        _SUBCLASSES[cls]._compile_failed = False  # each run tries again (the failure may have been its own)
        module.__class__ = _SUBCLASSES[cls]
        n += 1
    return n


def tokens_per_step(items, steps_per_epoch: int) -> float:
    """An epoch's tokens per optimizer step, from the mean length of its first 1,000 items (a
    sequence, or a preference item with its own length)."""
    from tunelab.train.batching import seq_length

    sample = [items[i] for i in range(min(len(items), 1000))]
    if not sample or not steps_per_epoch:
        return 0.0
    mean = sum(getattr(it, "length", None) or seq_length(it) for it in sample) / len(sample)
    return mean * len(items) / steps_per_epoch


def compile_if_it_pays(cfg, model, architecture: str, items, steps_per_epoch: int, total_steps: int, world: int,
                       device_type: str, n_trainable: int, n_total: int) -> bool:
    """Compile `model`'s decoder layers where train.compile says so (see should_compile)."""
    check_compile(cfg, world, architecture)
    work = 0.0
    if cfg.train.compile == "auto":  # only auto weighs the work
        work = estimated_flops(n_total, 2 * n_trainable > n_total, tokens_per_step(items, steps_per_epoch),
                               total_steps)
    return should_compile(cfg, world, device_type, work, architecture) and compile_layers(model) > 0
