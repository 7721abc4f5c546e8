"""The fused LoRA linear (train/lora_linear.py) and the frozen head's loss (train/loss.py
FrozenHeadLoss): peft's and autograd's numbers in fp32, within bf16 rounding of them under
autocast (no further from an fp32 reference than the unfused code), and peft's own forward
wherever the fused one does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from tunelab.train.loss import FrozenHeadLoss, _head_loss, chunked_head_loss
from tunelab.train.lora_linear import enable_fused_lora


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q = torch.nn.Linear(64, 96, bias=False)
        self.o = torch.nn.Linear(96, 64, bias=True)

    def forward(self, x):
        return self.o(torch.relu(self.q(x)))


def lora_model(dtype=torch.float32, **options):
    """A peft LoRA model as training sets it up: frozen base in `dtype`, fp32 adapters, B off zero."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q", "o"], **options)
    model = get_peft_model(Block().to(dtype), config)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float() + torch.randn(p.shape) * 0.1
    return model


def outputs(model, x, autocast: bool):
    """[output, input gradient, adapter gradients...] of sum(output^2)."""
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = model(x)
    (y.float() ** 2).sum().backward()
    return [y.float(), x.grad.float()] + [p.grad for p in model.parameters() if p.requires_grad]


def relative(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_fused_lora_is_peft_in_fp32_and_as_close_to_it_as_peft_in_bf16():
    x = torch.randn(4, 33, 64)
    reference = outputs(lora_model(), x, autocast=False)  # fp32 throughout
    fused = lora_model()
    assert enable_fused_lora(fused) == 2
    for a, b in zip(outputs(fused, x, autocast=False), reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # fp32 rounding of the sums
    plain, fused = lora_model(torch.bfloat16), lora_model(torch.bfloat16)  # a bf16 base, under autocast
    enable_fused_lora(fused)
    for a, b, ref in zip(outputs(plain, x, True), outputs(fused, x, True), reference):
        assert b.dtype == ref.dtype
        assert relative(b, ref) <= 1.25 * relative(a, ref) + 1e-3  # bf16's error, not more
        assert relative(b, a) < 3e-2


@pytest.mark.parametrize("options", [{"lora_dropout": 0.1}, {"use_dora": True}, {"lora_bias": True}])
def test_what_the_fused_forward_does_not_cover_runs_peft(options):
    x = torch.randn(2, 5, 64)
    plain, fused = lora_model(**options), lora_model(**options)
    enable_fused_lora(fused)
    plain.eval(), fused.eval()  # dropout off: the two forwards compare
    torch.testing.assert_close(fused(x), plain(x), rtol=0, atol=0)
    layer = fused.base_model.model.q
    assert layer.forward.__func__ is type(layer).forward
    with fused.disable_adapter():  # adapters off: the base layer alone
        torch.testing.assert_close(fused(x), Block.forward(fused.base_model.model, x), rtol=0, atol=0)


def test_fused_forward_survives_mode_changes_and_merges():
    fused = lora_model()
    enable_fused_lora(fused)
    x = torch.randn(2, 5, 64)
    before = fused(x)
    fused.eval().train()
    assert all(getattr(m, "_fused_lora", False) for m in (fused.base_model.model.q, fused.base_model.model.o))
    merged = copy.deepcopy(fused).merge_and_unload()
    torch.testing.assert_close(merged(x), before, rtol=1e-5, atol=1e-5)


def test_frozen_head_loss_is_the_checkpointed_loss():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False).requires_grad_(False)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    whole = _head_loss(head, hidden, targets)
    (expected,) = torch.autograd.grad(whole * 0.3, [hidden])
    loss = chunked_head_loss(head, hidden, targets, chunk=8)  # 5 chunks, the last one short
    assert loss.grad_fn.name() == "FrozenHeadLossBackward"
    (grad,) = torch.autograd.grad(loss * 0.3, [hidden])
    assert torch.equal(loss, chunked_head_loss(head, hidden.detach(), targets, chunk=8))  # = validation's
    torch.testing.assert_close(loss, whole, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def test_frozen_head_loss_under_autocast_is_bf16_close():
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 500, bias=False).to(torch.bfloat16).requires_grad_(False)
    hidden32 = torch.randn(300, 64)
    targets = torch.randint(0, 500, (300,))
    results = []
    for frozen in (False, True):  # False: the checkpointed chunks (a trainable-looking head)
        hidden = hidden32.to(torch.bfloat16).requires_grad_()
        head.weight.requires_grad_(not frozen)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = chunked_head_loss(head, hidden, targets, chunk=128)
        assert (loss.grad_fn.name() == "FrozenHeadLossBackward") == frozen
        results.append((loss.detach(), torch.autograd.grad(loss / 300, [hidden])[0]))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert torch.equal(loss_a, loss_b)  # the same log-softmax and NLL on the same logits
    exact = hidden32.requires_grad_()
    (grad_32,) = torch.autograd.grad(F.cross_entropy(exact @ head.weight.float().t(), targets), [exact])
    assert relative(grad_b, grad_32) <= 1.25 * relative(grad_a, grad_32) + 1e-3
    assert relative(grad_b, grad_a) < 1e-2
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # validation: the plain chunks
        assert torch.equal(chunked_head_loss(head, hidden32.to(torch.bfloat16), targets, chunk=128), loss_a)


def test_frozen_head_loss_keeps_no_logits():
    kept = []
    head = torch.nn.Linear(16, 50, bias=False).requires_grad_(False)
    hidden = torch.randn(37, 16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.shape) or t, lambda t: t):
        FrozenHeadLoss.apply(hidden, head.weight, torch.randint(0, 50, (37,)), 8)
    assert kept == [torch.Size([37, 16])]  # the hidden states' gradient only
