import pytest
import torch

from tunelab.config.train import TrainConfig
from tunelab.train.batching import collate, to_sequences
from tunelab.train.loss import CompletionLoss
from tunelab.train.optim import build_optimizer, lr_lambda


class Ex:
    def __init__(self, prompt, target):
        self.input_ids = prompt + target
        self.label_ids = [-100] * len(prompt) + target


def test_fast_loss_matches_transformers_loss(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loss_model = CompletionLoss(model, "causal", "lora")
    assert loss_model.skip_masked_head
    batch = collate(to_sequences([Ex([11, 12, 13, 14], [15, 16]), Ex([21, 22], [23, 24, 25])]), pad_id=0)
    loss_sum, n = loss_model(**batch.tensors)
    ref = model(input_ids=batch.tensors["input_ids"], attention_mask=batch.tensors["attention_mask"],
                labels=batch.tensors["labels"]).loss
    assert int(n) == 5
    assert abs(float(loss_sum) / 5 - float(ref)) < 1e-5


def test_schedules():
    cfg = TrainConfig(warmup_steps=10, scheduler="cosine")
    f = lr_lambda(cfg, 110)
    assert f(0) == 0.0 and f(5) == 0.5 and f(10) == 1.0
    assert abs(f(60) - 0.5) < 1e-9 and abs(f(110)) < 1e-12
    lin = lr_lambda(TrainConfig(scheduler="linear", warmup_ratio=0.1, min_lr_ratio=0.1), 100)
    assert lin(10) == 1.0 and abs(lin(100) - 0.1) < 1e-12 and abs(lin(55) - 0.55) < 1e-12
    const = lr_lambda(TrainConfig(scheduler="constant"), 100)
    assert const(0) == const(99) == 1.0


@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"),
                                      ("adafactor", "Adafactor"), ("RMSprop", "RMSprop"), ("adagrad", "Adagrad")])
def test_optimizer_by_name(name, cls):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, TrainConfig(optimizer=name, weight_decay=0.1, momentum=0.9, nesterov=True))
    assert type(opt).__name__ == cls
    # Matrices decay, biases and norm scales do not.
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    if name == "sgd":
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9


def test_unknown_optimizer_is_a_config_error():
    from tunelab.config import ConfigError

    with pytest.raises(ConfigError, match="unknown optimizer 'adamz'"):
        build_optimizer(torch.nn.Linear(2, 2), TrainConfig(optimizer="adamz"))


def test_chunked_head_loss_equals_one_pass_with_gradients():
    """Checkpointed chunks of the LM head give the one-pass loss and the same gradients."""
    import torch

    from tunelab.train.loss import _head_loss, chunked_head_loss

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    whole = _head_loss(head, hidden, targets)
    g_hidden, g_head = torch.autograd.grad(whole, [hidden, head.weight])
    chunked = chunked_head_loss(head, hidden, targets, chunk=8)  # 5 chunks, the last one short
    c_hidden, c_head = torch.autograd.grad(chunked, [hidden, head.weight])
    assert torch.allclose(whole, chunked, rtol=1e-6)
    assert torch.allclose(g_hidden, c_hidden, atol=1e-6) and torch.allclose(g_head, c_head, atol=1e-6)
    with torch.no_grad():  # validation: plain chunks, the same number
        assert torch.allclose(chunked_head_loss(head, hidden, targets, chunk=8), whole, rtol=1e-6)
