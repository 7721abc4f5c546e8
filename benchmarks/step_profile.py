"""Where a tunelab training step's time goes, by class of work (`train_bench.py --profile`).

After two warm-up steps, half of the remaining steps are timed without the profiler, by phase
(perf_counter around the loop's own functions): forward + backward, data and collation, gradient
clipping, the optimizer, the rest of the step (scheduler, counters, logging). The other half runs
under torch.profiler, which splits forward + backward into operator classes by each aten
operator's *self* time; those shares are scaled back to the unprofiled forward + backward time
(the profiler's per-operator cost inflates it: the factor is printed).

  matmul: base        mm/addmm/bmm of the frozen (or full) weights, forward and backward
  matmul: LoRA        the adapters' thin matmuls (one side has the LoRA rank)
  matmul: LM head     matmuls with the vocabulary as one side (the head at the trained positions)
  loss                log-softmax and NLL, forward and backward
  matmul: attention   QK^T and AV as batched matmuls (eager attention, tunelab's CPU default)
  attention           the rest of attention: softmax, or the fused scaled-dot-product kernel
  elementwise         norms, activations, rotary, residual adds, scaling: pointwise and reductions
  compiled kernels    inductor's fused C++ loops of compiled layers (train.compile): the elementwise
                      work, casts and softmax of the layer, fused (the profile turns on inductor's
                      per-kernel records, so that they are seen at all)
  casts and copies    dtype casts (autocast), copies, contiguous
  indexing            gathers, masked selects, index_put, cat/split/slicing views
  backward glue       gradient accumulation into .grad, zeros, detach, view bookkeeping
  Python and framework  forward + backward's wall time with no aten operator running (module
                      calls, hooks, autograd's engine between nodes, part of the profiler's cost)

Self times are wall time on the thread that issued the operator; intra-op threads work inside
it. The profiler's cost per operator inflates the classes of many small operators most (read
"elementwise" and "Python and framework" as upper bounds).
"""

from __future__ import annotations

import time
from collections import defaultdict

CLASSES = ["matmul: base", "matmul: LoRA", "matmul: LM head", "matmul: attention", "loss", "attention", "elementwise",
           "compiled kernels", "casts and copies",
           "indexing", "backward glue", "optimizer", "gradient clipping", "data and collation", "Python and framework"]
MATMULS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::matmul", "aten::linear", "aten::addmv"}
ATTENTION_MATMULS = {"aten::bmm", "aten::baddbmm"}  # the linear layers run mm/addmm on 2-D views
LOSS = ("log_softmax", "nll_loss", "cross_entropy")
CASTS = {"aten::to", "aten::_to_copy", "aten::copy_", "aten::contiguous", "aten::clone", "aten::type_as"}
INDEXING = ("index", "gather", "scatter", "masked", "nonzero", "aten::cat", "aten::split", "aten::slice",
            "aten::select", "aten::narrow", "aten::unbind", "aten::chunk", "aten::embedding", "aten::where")
GLUE = {"aten::zeros", "aten::zeros_like", "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::fill_",
        "aten::zero_", "aten::detach", "aten::detach_", "aten::view", "aten::reshape", "aten::t", "aten::transpose",
        "aten::expand", "aten::as_strided", "aten::permute", "aten::unsqueeze", "aten::squeeze", "aten::_unsafe_view",
        "aten::alias", "aten::lift_fresh", "aten::ones_like", "aten::new_zeros", "aten::new_empty_strided",
        "aten::resolve_conj", "aten::resolve_neg", "aten::result_type", "aten::item", "aten::_local_scalar_dense"}
RANGES = {"optimizer": ("Optimizer.step", "Optimizer.zero_grad"), "gradient clipping": ("clip_grad_norm",),
          "data and collation": ("collate",)}


def _range_class(event) -> str | None:
    parent = event
    while parent is not None:
        for cls, prefixes in RANGES.items():
            if parent.name.startswith(prefixes):
                return cls
        parent = parent.cpu_parent
    return None


def _inside(event, label: str) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == label:
            return True
        parent = parent.cpu_parent
    return False


def _in_backward_of_accumulate(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if "AccumulateGrad" in parent.name:
            return True
        parent = parent.cpu_parent
    return False


def classify(event, rank: int, vocab: int) -> str | None:
    """The class of one profiled aten operator (None: not an operator, e.g. a range)."""
    name = event.name
    if "_cpp_fused_" in name:  # graph_N_cpp_fused_...: a kernel of a compiled layer (train.compile): fused pointwise ops
        return "compiled kernels"
    if not name.startswith("aten::"):
        return None
    ranged = _range_class(event)
    if ranged:
        return ranged
    if name in MATMULS:
        dims = {d for shape in (event.input_shapes or []) for d in (shape or [])}
        if vocab in dims:
            return "matmul: LM head"
        return "matmul: LoRA" if rank in dims else "matmul: base"
    if name in ATTENTION_MATMULS:
        return "matmul: attention"
    if any(k in name for k in LOSS):
        return "loss"
    if "softmax" in name or "scaled_dot_product" in name or "flash_attention" in name or "_efficient_attention" in name:
        return "attention"
    if name in GLUE or _in_backward_of_accumulate(event):
        return "backward glue"
    if name in CASTS:
        return "casts and copies"
    if any(k in name for k in INDEXING):
        return "indexing"
    return "elementwise"


def classified(prof, rank: int, vocab: int) -> list[tuple[str, str, float, bool]]:
    """Every profiled aten operator once: (class, name, self seconds, inside forward + backward)."""
    out = []
    for event in prof.events():
        cls = classify(event, rank, vocab)
        if cls is not None:
            out.append((cls, event.name, event.self_cpu_time_total / 1e6, _inside(event, "fwd_bwd")))
    return out


def breakdown(ops, wall_s: float) -> dict:
    """{class: seconds} of the operators inside forward + backward over the profiled steps; the
    remainder of `wall_s` (their wall time) is Python and framework."""
    seconds: dict[str, float] = defaultdict(float)
    for cls, _, secs, inside in ops:
        if inside:
            seconds[cls] += secs
    seconds["Python and framework"] = max(0.0, wall_s - sum(seconds.values()))
    return {cls: seconds.get(cls, 0.0) for cls in CLASSES}


def profile_run(train_fn, cfg, data, steps: int, rank: int, vocab: int) -> dict:
    """Run `train_fn(cfg, data=data)`; time its steps' phases without the profiler (the first half
    after two warm-up steps) and split forward + backward into operator classes with it (the
    second half). {class: s per step}, the unprofiled step time, the profiler's inflation."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
    from torch.profiler import ProfilerActivity, profile, record_function

    import tunelab.train.loop as loop
    import tunelab.train.steps as steps_module

    skip = 2
    timed = (steps - skip) // 2
    active = steps - skip - timed
    if timed < 1 or active < 1:
        raise SystemExit("--profile needs --steps >= 4 (two warm-up steps, then timed and profiled halves)")
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True  # compiled kernels as profiler events (a flag check when off)
    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True,
                   schedule=torch.profiler.schedule(wait=skip + timed - 1, warmup=1, active=active, repeat=1))
    phases: list[dict] = []  # one per step: {phase: seconds}
    plain = {"step": loop.train_step, "fwd": steps_module.forward_backward, "batch": steps_module.micro_batch,
             "clip": torch.nn.utils.clip_grad_norm_}

    def timed_as(name, fn, label=None):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            if label:
                with record_function(label):
                    out = fn(*a, **k)
            else:
                out = fn(*a, **k)
            phases[-1][name] = phases[-1].get(name, 0.0) + time.perf_counter() - t0
            return out
        return wrapper

    def step(*a, **k):
        phases.append({})
        out = timed_as("step", plain["step"])(*a, **k)
        prof.step()
        return out

    loop.train_step, steps_module.forward_backward = step, timed_as("forward + backward", plain["fwd"], "fwd_bwd")
    steps_module.micro_batch = timed_as("data and collation", plain["batch"], "collate")
    torch.nn.utils.clip_grad_norm_ = timed_as("gradient clipping", plain["clip"], "clip_grad_norm")
    started: list[float] = []  # the optimizer's own step (AdamW.step) through torch's global hooks
    hooks = [register_optimizer_step_pre_hook(lambda *a: started.append(time.perf_counter())),
             register_optimizer_step_post_hook(lambda *a: phases[-1].__setitem__(
                 "optimizer", phases[-1].get("optimizer", 0.0) + time.perf_counter() - started.pop()))]
    try:
        with prof:
            train_fn(cfg, data=data)
    finally:
        loop.train_step, steps_module.forward_backward = plain["step"], plain["fwd"]
        steps_module.micro_batch, torch.nn.utils.clip_grad_norm_ = plain["batch"], plain["clip"]
        for hook in hooks:
            hook.remove()
    quiet, loud = phases[skip:skip + timed], phases[skip + timed:skip + timed + active]
    mean = {k: sum(p.get(k, 0.0) for p in quiet) / timed for k in ("step", "forward + backward", "data and collation",
                                                                     "gradient clipping", "optimizer")}
    loud_fwd = sum(p["forward + backward"] for p in loud) / active
    events = classified(prof, rank, vocab)
    ops = breakdown(events, loud_fwd * active)  # operator classes inside forward + backward
    scale = mean["forward + backward"] / loud_fwd  # the profiler's inflation, taken out
    per_step = {cls: s / active * scale for cls, s in ops.items() if cls not in RANGES}
    per_step["Python and framework"] = per_step.pop("Python and framework")  # keep it after the operators
    per_step["data and collation"] = mean["data and collation"]
    per_step["gradient clipping"] = mean["gradient clipping"]
    per_step["optimizer"] = mean["optimizer"]
    per_step["rest of the step"] = max(0.0, mean["step"] - sum(per_step.values()))
    return {"seconds_per_step": per_step, "step_s": mean["step"], "timed_steps": timed, "profiled_steps": active,
            "profiler_inflation": 1 / scale, "top_ops": top_ops(events)}


def top_ops(ops, n: int = 12) -> list[tuple[str, str, float]]:
    """The operators with the most self time: (class, name, seconds over the profiled steps)."""
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for cls, name, secs, _ in ops:
        totals[(cls, name)] += secs
    return [(c, name, s) for (c, name), s in sorted(totals.items(), key=lambda kv: -kv[1])[:n]]


def print_breakdown(result: dict, cpu: str) -> None:
    step = result["step_s"]
    print(f"\nwhere a step goes (tunelab; {result['timed_steps']} steps timed, {step:.3f} s a step; then "
          f"{result['profiled_steps']} profiled, the profiler making forward + backward "
          f"{result['profiler_inflation']:.2f}x slower; {cpu})")
    for cls, s in result["seconds_per_step"].items():
        print(f"  {cls:<24}{s * 1000:9.1f} ms  {s / step:6.1%}")
    matmul = sum(s for cls, s in result["seconds_per_step"].items() if cls.startswith("matmul"))
    print(f"  {'not matmul':<24}{(step - matmul) * 1000:9.1f} ms  {(step - matmul) / step:6.1%}")
    print("  operators with the most self time (profiled steps, all classes):")
    for cls, name, s in result["top_ops"]:
        print(f"    {name:<46}{cls:<20}{s * 1000 / result['profiled_steps']:9.1f} ms a step (profiled)")
