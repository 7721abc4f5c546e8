"""LoRA linear layers for training: base matmul, adapter and scaling as one autograd node.

peft's `lora.Linear.forward` computes base(x) + B(A(dropout(x))) * scaling as separate modules
and operators. Under bf16 autocast with frozen bf16 weights (tunelab's LoRA setup) each adapted
linear then runs, besides its three real matmuls, two casts of the fp32 adapter weights, a
(tokens x out) multiply by the scaling and a (tokens x out) add in forward, the same multiply and
a (tokens x in) gradient add in backward, and six autograd nodes and five module calls. Written
here because peft has no fused path and eager torch fuses nothing by itself. Measured with the
frozen head's loss (loss.py) on SmolLM2-135M LoRA, batch 8 x 256, 2-core AMD EPYC: 1.20x the
real tokens/s of the code before them, in the same run.

`LoraFunction` runs the same matmuls with the scaling and the additions folded into them
(torch.addmm's alpha and its accumulation into the output): forward
    out = x W^T (+ bias);  out += scaling * (x A^T) B^T
and backward
    gh = scaling * (g B);  grad_B = scaling * g^T (x A^T);  grad_A = gh^T x;  grad_x = g W + gh A
in the compute dtype (autocast's, else the input's), adapter gradients returned in fp32 as
autocast's casts would. The sums round once instead of twice: the result differs from peft's
by bf16 rounding of the additions only (tests/train/test_lora_linear.py bounds it).

Used only for what it is exact for: peft's plain `lora.Linear` (no DoRA or other variant, no
dropout, one active adapter, not merged, adapters enabled, no per-row adapter names) over a
floating-point nn.Linear whose weight and bias are frozen. Anything else runs peft's own forward.
Like train/recompute.py, the layer gets a subclass of its class (same name) whose forward is ours.
"""

from __future__ import annotations

import torch


class LoraFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float):
        dtype = x.dtype
        x2 = x.reshape(-1, x.shape[-1])
        a, b = lora_a.to(dtype), lora_b.to(dtype)
        h = torch.mm(x2, a.t())
        out = torch.mm(x2, weight.t()) if bias is None else torch.addmm(bias.to(dtype), x2, weight.t())
        out.addmm_(h, b.t(), alpha=scaling)
        ctx.save_for_backward(x2, weight, a, b, h)
        ctx.scaling, ctx.shape = scaling, x.shape
        ctx.a_dtype, ctx.b_dtype = lora_a.dtype, lora_b.dtype
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x2, weight, a, b, h = ctx.saved_tensors
        s = ctx.scaling
        g = grad.reshape(-1, grad.shape[-1]).to(x2.dtype)
        gh = torch.mm(g, b)
        gh.mul_(s)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(g, weight)
            grad_x.addmm_(gh, a)
            grad_x = grad_x.view(ctx.shape)
        grad_a = torch.mm(gh.t(), x2).to(ctx.a_dtype) if ctx.needs_input_grad[3] else None
        grad_b = None
        if ctx.needs_input_grad[4]:  # (h^T g)^T: oneDNN runs g^T h (g transposed) twice as long
            grad_b = torch.mm(h.t(), g).mul_(s).t().to(ctx.b_dtype, memory_format=torch.contiguous_format)
        return grad_x, None, None, grad_a, grad_b, None


def _fusable(layer, kwargs) -> str | None:
    """The active adapter's name if `layer` can run LoraFunction now, else None."""
    if kwargs or layer.disable_adapters or layer.merged:
        return None
    active = layer.active_adapters
    if len(active) != 1:
        return None
    name = active[0]
    # lora_variant (DoRA and later variants) is peft >= 0.15's; older releases mark DoRA in use_dora
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}) or \
            getattr(layer, "use_dora", {}).get(name):
        return None
    if not isinstance(layer.lora_dropout[name], torch.nn.Identity):
        return None
    base = layer.base_layer
    if type(base) is not torch.nn.Linear or base.weight.requires_grad:
        return None
    if base.bias is not None and base.bias.requires_grad:
        return None
    if layer.lora_B[name].bias is not None:
        return None
    return name


def _fused_forward(self, x, *args, **kwargs):
    name = _fusable(self, kwargs) if not args else None
    if name is None:
        return type(self)._peft_forward(self, x, *args, **kwargs)
    base = self.base_layer
    weight, bias = base.weight, base.bias
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        with torch.autocast(x.device.type, enabled=False):
            x, weight = x.to(dtype), weight.to(dtype)
            return LoraFunction.apply(x, weight, bias, self.lora_A[name].weight, self.lora_B[name].weight,
                                      self.scaling[name])
    if weight.dtype != x.dtype:
        return type(self)._peft_forward(self, x, *args, **kwargs)
    return LoraFunction.apply(x, weight, bias, self.lora_A[name].weight, self.lora_B[name].weight,
                              self.scaling[name])


_SUBCLASSES: dict[type, type] = {}


def enable_fused_lora(model) -> int:
    """Give each plain peft lora.Linear of `model` the fused forward; the number changed."""
    try:
        from peft.tuners.lora.layer import Linear
    except ImportError:
        return 0
    n = 0
    for module in model.modules():
        cls = type(module)
        if cls is not Linear or "forward" in vars(module):
            continue
        if cls not in _SUBCLASSES:
            _SUBCLASSES[cls] = type(cls.__name__, (cls,), {
                "forward": _fused_forward, "_peft_forward": cls.forward, "_fused_lora": True,
                "__module__": cls.__module__, "__qualname__": cls.__qualname__})
        module.__class__ = _SUBCLASSES[cls]
        n += 1
    return n
