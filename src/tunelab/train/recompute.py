"""Selective recompute: backward recomputes the cheapest activations instead of keeping them.

Measured on SmolLM2-135M LoRA, bf16, batch 8 x 256 (saved-for-backward tensors of one step):
the gated MLP keeps silu(gate) next to gate and up (a third 2048 x 1536 tensor per layer, 180 MB),
and every RMSNorm keeps its input upcast to fp32 (twice the bytes of the bf16 residual it came
from, 270 MB for 60 norms). Both are elementwise work: recomputing them in backward costs well
under 1% of a step and gives back ~315 MB, the difference between tunelab and TRL's peak RSS.

Two wrappers, both torch's own non-reentrant activation checkpointing around a tiny function, so
backward re-runs exactly the forward's operations: loss and gradients are bit-identical (tested).
  norms:        any module of the decoder whose class name ends in "RMSNorm" (the module's own
                forward, whatever its formula: Gemma's 1 + weight included)
  gated MLPs:   modules with gate_proj, up_proj, down_proj and act_fn whose forward is
                down(act(gate(x)) * up(x)) — checked on a random input before the module is
                changed; any other MLP (fused gate_up_proj, GELU MLPs, ...) keeps its own forward
Written here because the libraries that fuse these ops (Liger-Kernel's SwiGLU and RMSNorm) are
Triton kernels for CUDA; transformers' gradient checkpointing recomputes whole layers (~30%
slower), not single ops.

Each wrapped module gets a subclass of its own class (same name) whose forward is the wrapper,
not an instance attribute `forward`: from transformers 5.25 on, with the `kernels` package
installed, every model.train() / model.eval() re-kernelizes the layers marked for hub kernels
(RMSNorm among them) and deletes their instance `forward` — which silently undid the norms'
recompute (Phi-3, Mixtral and Qwen3-MoE then kept as much as without it). A kernel that does
replace a layer's forward is an instance attribute and wins over the subclass: that layer then
runs the kernel, not our recompute.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _gated(act_fn, gate, up):
    return act_fn(gate) * up


def _recomputed_mlp_forward(self, x):
    gate, up = self.gate_proj(x), self.up_proj(x)
    return self.down_proj(checkpoint(_gated, self.act_fn, gate, up, use_reentrant=False, preserve_rng_state=False))


def _recomputed_norm_forward(self, hidden_states, *args, **kwargs):
    plain = type(self)._unrecomputed_forward.__get__(self)
    return checkpoint(plain, hidden_states, *args, use_reentrant=False, preserve_rng_state=False, **kwargs)


_SUBCLASSES: dict[tuple[type, object], type] = {}


def _wrap(module, forward) -> None:
    """Give `module` a subclass of its class, of the same name, whose forward is `forward`."""
    cls = type(module)
    key = (cls, forward)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type(cls.__name__, (cls,), {
            "forward": forward, "_unrecomputed_forward": cls.forward, "_selective_recompute": True,
            "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    module.__class__ = _SUBCLASSES[key]


def _is_gated_mlp(module) -> bool:
    """Whether module(x) is down(act(gate(x)) * up(x)), on a random input (training mode, no grad)."""
    if not all(hasattr(module, name) for name in ("gate_proj", "up_proj", "down_proj", "act_fn")):
        return False
    weight = module.gate_proj.weight  # the base layer's, also under a PEFT wrapper
    if not weight.is_floating_point():  # quantized (QLoRA): leave it as it is
        return False
    x = torch.randn(2, 3, module.gate_proj.in_features, generator=torch.Generator().manual_seed(0))
    x = x.to(device=weight.device, dtype=weight.dtype)
    # half-precision frozen weights next to fp32 adapters run only under autocast, as in training
    autocast = torch.autocast(weight.device.type, dtype=weight.dtype, enabled=weight.dtype != torch.float32)
    was_training = module.training
    module.train()  # in training mode: an MLP with dropout gives two different answers and is left alone
    try:
        with torch.no_grad(), autocast:
            expected, again = module(x), module(x)
            ours = module.down_proj(_gated(module.act_fn, module.gate_proj(x), module.up_proj(x)))
    finally:
        module.train(was_training)
    return torch.equal(expected, again) and torch.equal(expected, ours)


def enable_selective_recompute(model) -> dict[str, int]:
    """Wrap the RMSNorms and gated MLPs of `model` in place; {"norms": n, "mlps": n} changed."""
    counts = {"norms": 0, "mlps": 0}
    checked: dict[type, bool] = {}  # one probe per MLP class
    for module in model.modules():
        # already wrapped, or a hub kernel's forward installed on the instance (it stays)
        if getattr(module, "_selective_recompute", False) or "forward" in vars(module):
            continue
        if type(module).__name__.endswith("RMSNorm"):
            _wrap(module, _recomputed_norm_forward)
            counts["norms"] += 1
        elif hasattr(module, "gate_proj") and hasattr(module, "act_fn"):
            if type(module) not in checked:
                checked[type(module)] = _is_gated_mlp(module)
            if checked[type(module)]:
                _wrap(module, _recomputed_mlp_forward)
                counts["mlps"] += 1
    return counts
