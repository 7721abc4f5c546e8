"""Preference losses equal TRL 1.16's own trainers on the same model, batch and hyperparameters.

Tiny random models of two families (Llama with tied embeddings, Qwen2 with biases and an untied
head) with SmolLM2's tokenizer, LoRA adapters, real pairs from ../shared/data/preferences
rendered by tunelab's data pipeline. For each objective TRL's trainer runs its own code
(DPOTrainer.compute_loss / compute_ref_log_probs, KTOTrainer.compute_loss / compute_ref_log_probs,
CPOTrainer.get_batch_loss_metrics, ORPOTrainer.concatenated_forward / odds_ratio_loss) on the same
token ids, and the per-example reference log-probs, the policy's (per example for ORPO, as batch
means and per-example rewards for DPO/KTO), the loss, the logged rewards and the gradient of every
LoRA parameter must agree within float32 tolerance.

TRL makes the reference of a model that already has an adapter a frozen copy of that adapter;
tunelab's reference is the base model with the adapter disabled (the same thing for a fresh,
zero-initialised adapter). So each trainer is built on the fresh adapter, and only then both
adapters get the same random weights (as after some training): both references are the base.
"""

from __future__ import annotations

import copy
import os
from types import SimpleNamespace

import pytest
import torch

try:  # the test extra installs TRL (1.16's trainers: the fused-head DPO, trl.experimental's CPO/ORPO)
    import trl  # noqa: F401
except ImportError:
    if os.environ.get("CI"):  # a skip there would hide a broken setup
        raise
    pytest.skip("trl is not installed (pip install -e '.[test]')", allow_module_level=True)

FAMILIES = ("llama", "qwen2")
# A summed log-prob is ~1e2-1e3 in magnitude; TRL's fused head (a tiled logsumexp) and ours (a
# cross-entropy per chunk) add in other orders, so sums agree to ~1e-4 absolute in float32 and a
# loss (beta times their differences) to ~1e-5.
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5


def tiny_model(family: str, tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    shape = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=True))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=False))
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets))


def same_random_adapters(*models, seed: int = 1, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    names = [n for n, p in models[0].named_parameters() if p.requires_grad]
    values = {n: torch.randn(models[0].get_parameter(n).shape, generator=g) * scale for n in names}
    with torch.no_grad():
        for model in models:
            for n in names:
                model.get_parameter(n).copy_(values[n])


def lora_grads(model) -> dict[str, torch.Tensor]:
    return {n.replace(".default", ""): p.grad.clone() for n, p in model.named_parameters()
            if p.requires_grad and p.grad is not None}


def assert_grads_equal(ours: dict, theirs: dict) -> None:
    """Every LoRA gradient equal up to float32 summation order: the largest difference within
    1e-3 of the tensor's largest entry (a wrong mask, reference or reduction is off by far more)."""
    assert ours.keys() == theirs.keys() and ours
    for name in ours:
        scale = float(theirs[name].abs().max())
        diff = float((ours[name] - theirs[name]).abs().max())
        assert scale > 0 and diff <= 1e-3 * scale, f"{name}: max difference {diff:.3g} (largest entry {scale:.3g})"


@pytest.fixture(scope="module")
def pairs(tokenizer, shared_data):
    from tunelab.data import build_task

    task = build_task({"name": "dpo", "kind": "preference", "limit": 40,
                       "source": str(shared_data / "preferences" / "llamafactory_dpo_en_demo.json")},
                      tokenizer, max_length=128)
    # short sequences: TRL's fused LM head is slow on CPU (about 5 s for 1,000 rows x tokens here)
    examples = sorted(task.splits["train"], key=lambda e: len(e) + len(e.rejected_ids))[:3]
    assert len(examples) == 3
    return examples


@pytest.fixture(scope="module")
def kto_examples(tokenizer, shared_data):
    from tunelab.data import build_task

    task = build_task({"name": "kto", "kind": "kto",
                       "source": str(shared_data / "preferences" / "llamafactory_kto_en_demo.json")},
                      tokenizer, max_length=128)
    train = sorted(task.splits["train"], key=len)
    good, bad = [e for e in train if e.desirable][:2], [e for e in train if not e.desirable][:2]
    assert len(good) == len(bad) == 2
    return [good[0], bad[0], bad[1], good[1]]


def ours(objective: str, model, examples, **options):
    from tunelab.train.preference import PreferenceLoss
    from tunelab.train.preference_batches import collate_preference, preference_items

    opts = SimpleNamespace(beta=0.1, dpo_loss="sigmoid", label_smoothing=0.0, simpo_gamma=0.5,
                           desirable_weight=1.0, undesirable_weight=1.0)
    opts.__dict__.update(options)
    loss_model = PreferenceLoss(model, "causal", "lora", objective, opts)
    assert loss_model.skip_masked_head  # the fast path (LM head on scored positions only) is what is tested
    batch = collate_preference(preference_items(examples, objective), 0, loss_model.shared_prompt)
    # pairs in one row each, as training collates them (train/preference_batches.py)
    assert loss_model.shared_prompt == (objective != "kto") and ("segments" in batch.tensors) == (objective != "kto")
    loss_sum, metrics = loss_model(**batch.tensors)
    loss = loss_sum / len(examples)
    loss.backward()
    policy, _ = loss_model.logps(batch.tensors)
    reference, _ = loss_model.logps(batch.tensors, reference=True)
    return loss.detach(), {k: float(s) / n for k, (s, n) in metrics.items() if n}, policy.detach(), reference


def trl_args(config_class, tmp_path, **kwargs):
    return config_class(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False,
                        gradient_checkpointing=False, **kwargs)


def dpo_trainer(model, tokenizer, tmp_path, n_pairs: int, **config):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = trl_args(DPOConfig, tmp_path, per_device_train_batch_size=n_pairs, max_length=None,
                    pad_to_multiple_of=None, **config)
    return DPOTrainer(model=copy.deepcopy(model), args=args, processing_class=tokenizer,
                      train_dataset=Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}]))


def dpo_inputs(trainer, examples):
    return trainer.data_collator([{"prompt_ids": e.prompt_ids, "chosen_ids": e.target_ids,
                                   "rejected_ids": e.rejected_ids} for e in examples])


def logged(trainer) -> dict:
    return {k: v[-1] for k, v in trainer._metrics["train"].items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_dpo_matches_trl(family, pairs, tokenizer, tmp_path):
    model = tiny_model(family, tokenizer)
    trainer = dpo_trainer(model, tokenizer, tmp_path, len(pairs), beta=0.2, loss_type=["sigmoid"])
    same_random_adapters(model, trainer.model)
    loss, metrics, policy, reference = ours("dpo", model, pairs, beta=0.2)

    inputs = dpo_inputs(trainer, pairs)
    trl_loss = trainer.compute_loss(trainer.model, inputs)
    trl_loss.backward()
    # per example: the reference; the policy through its means (logps/*) and the rewards (per
    # example in rewards/accuracies)
    torch.testing.assert_close(reference, torch.cat(trainer.compute_ref_log_probs(trainer.model, inputs)),
                               rtol=1e-5, atol=1e-4)
    assert not torch.allclose(policy, reference)  # the adapter matters: the test compares something
    torch.testing.assert_close(loss, trl_loss.detach(), rtol=LOSS_RTOL, atol=LOSS_ATOL)
    trl_metrics = logged(trainer)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                "logps/rejected"):
        assert metrics[key] == pytest.approx(trl_metrics[key], rel=1e-3, abs=1e-4), key
    assert_grads_equal(lora_grads(model), lora_grads(trainer.model))


@pytest.mark.parametrize("loss_type", ["ipo", "hinge", "robust"])
def test_dpo_loss_variants_match_trl(loss_type, pairs, tokenizer, tmp_path):
    family = {"ipo": "qwen2", "hinge": "llama", "robust": "qwen2"}[loss_type]
    smoothing = 0.1 if loss_type == "robust" else 0.0
    two = pairs[:2]
    model = tiny_model(family, tokenizer)
    trainer = dpo_trainer(model, tokenizer, tmp_path, len(two), beta=0.2, loss_type=[loss_type],
                          label_smoothing=smoothing)
    same_random_adapters(model, trainer.model)
    objective = "ipo" if loss_type == "ipo" else "dpo"
    loss, metrics, _, _ = ours(objective, model, two, beta=0.2, dpo_loss="sigmoid" if loss_type == "ipo" else loss_type,
                               label_smoothing=smoothing)
    trl_loss = trainer.compute_loss(trainer.model, dpo_inputs(trainer, two))
    trl_loss.backward()
    torch.testing.assert_close(loss, trl_loss.detach(), rtol=LOSS_RTOL, atol=LOSS_ATOL)
    assert metrics["rewards/margins"] == pytest.approx(logged(trainer)["rewards/margins"], rel=1e-3, abs=1e-4)
    assert_grads_equal(lora_grads(model), lora_grads(trainer.model))


@pytest.mark.parametrize("family", FAMILIES)
def test_kto_matches_trl(family, kto_examples, tokenizer, tmp_path):
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    model = tiny_model(family, tokenizer)
    args = trl_args(KTOConfig, tmp_path, beta=0.3, desirable_weight=1.0, undesirable_weight=1.5,
                    per_device_train_batch_size=len(kto_examples), max_length=None, pad_to_multiple_of=None)
    records = [{"prompt": "a", "completion": "b", "label": True}, {"prompt": "c", "completion": "d", "label": False}]
    trainer = KTOTrainer(model=copy.deepcopy(model), args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list(records))
    same_random_adapters(model, trainer.model)
    loss, metrics, policy, reference = ours("kto", model, kto_examples, beta=0.3, undesirable_weight=1.5)

    completions = [e.target_ids for e in kto_examples]
    kl = [completions[-1]] + completions[:-1]  # TRL's add_kl_completion_ids: a rotation by one in the batch
    inputs = trainer.data_collator([{"prompt_ids": e.prompt_ids, "completion_ids": e.target_ids,
                                     "KL_completion_ids": k, "label": e.desirable} for e, k in zip(kto_examples, kl)])
    trl_loss = trainer.compute_loss(trainer.model, inputs)
    trl_loss.backward()
    ref = trainer.compute_ref_log_probs(trainer.model, inputs)

    torch.testing.assert_close(reference, ref[0] if isinstance(ref, tuple) else ref, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(policy, reference)
    torch.testing.assert_close(loss, trl_loss.detach(), rtol=LOSS_RTOL, atol=LOSS_ATOL)
    trl_metrics = logged(trainer)
    assert metrics["kl"] == pytest.approx(trl_metrics["kl"], rel=1e-4, abs=1e-6)
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
        assert metrics[key] == pytest.approx(trl_metrics[key], rel=1e-3, abs=1e-4), key
    assert_grads_equal(lora_grads(model), lora_grads(trainer.model))


def pair_batch(examples):
    """The batch layout of TRL's CPO/ORPO collator (chosen_/rejected_ input_ids, attention_mask, labels)."""
    from trl.trainer.utils import pad

    out = {}
    for side, key in (("chosen", "target_ids"), ("rejected", "rejected_ids")):
        ids = [torch.tensor(e.prompt_ids + getattr(e, key)) for e in examples]
        labels = [torch.tensor([-100] * len(e.prompt_ids) + getattr(e, key)) for e in examples]
        out[f"{side}_input_ids"] = pad(ids, padding_value=0)
        out[f"{side}_attention_mask"] = pad([torch.ones_like(i) for i in ids], padding_value=0)
        out[f"{side}_labels"] = pad(labels, padding_value=-100)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_simpo_matches_trl_cpo(family, pairs, tokenizer, tmp_path):
    from datasets import Dataset
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    model = tiny_model(family, tokenizer)
    args = trl_args(CPOConfig, tmp_path, loss_type="simpo", cpo_alpha=0.0, beta=2.0, simpo_gamma=0.7,
                    max_length=256)
    trainer = CPOTrainer(model=copy.deepcopy(model), args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}]))
    same_random_adapters(model, trainer.model)
    loss, metrics, policy, _ = ours("simpo", model, pairs, beta=2.0, simpo_gamma=0.7)

    trl_loss, trl_metrics = trainer.get_batch_loss_metrics(trainer.model, pair_batch(pairs))
    trl_loss.backward()
    torch.testing.assert_close(loss, trl_loss.detach(), rtol=LOSS_RTOL, atol=LOSS_ATOL)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert metrics[key] == pytest.approx(trl_metrics[key], rel=1e-3, abs=1e-4), key
    assert_grads_equal(lora_grads(model), lora_grads(trainer.model))


@pytest.mark.parametrize("family", FAMILIES)
def test_orpo_odds_ratio_matches_trl(family, pairs, tokenizer, tmp_path):
    """ORPO's odds-ratio term equals TRL's; its NLL term follows the paper (the chosen answer's
    tokens, a mean per example), where TRL also scores the prompt tokens: that part is checked
    against a direct cross-entropy instead."""
    from datasets import Dataset
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from tunelab.train.preference import pair_losses

    model = tiny_model(family, tokenizer)
    args = trl_args(ORPOConfig, tmp_path, beta=0.25, max_length=256)
    trainer = ORPOTrainer(model=copy.deepcopy(model), args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}]))
    same_random_adapters(model, trainer.model)
    loss, metrics, policy, _ = ours("orpo", model, pairs, beta=0.25)
    model.zero_grad()

    # TRL's own forward and odds-ratio loss; its log_odds_ratio metric is the batch mean of log σ(log odds)
    chosen, rejected, *_ = trainer.concatenated_forward(trainer.model, pair_batch(pairs))
    trl_terms, chosen_rewards, rejected_rewards, log_odds_ratio, _ = trainer.odds_ratio_loss(chosen, rejected)
    (-trl_terms.mean()).backward()
    assert metrics["log_odds_ratio"] == pytest.approx(float(log_odds_ratio), rel=1e-5, abs=1e-6)
    assert metrics["rewards/chosen"] == pytest.approx(float(chosen_rewards.mean()), rel=1e-5, abs=1e-6)
    n_chosen = torch.tensor([len(e.target_ids) for e in pairs])
    n_rejected = torch.tensor([len(e.rejected_ids) for e in pairs])
    torch.testing.assert_close(policy[:3] / n_chosen, chosen.detach(), rtol=1e-5, atol=1e-5)

    # our odds-ratio term alone (the per-pair loss minus its NLL), its gradient against TRL's
    from tunelab.train.preference import completion_logps
    from tunelab.train.preference_batches import collate_preference, preference_items

    t = collate_preference(preference_items(pairs, "orpo"), 0).tensors
    logps, counts = completion_logps(model, t, fast=True)
    losses, _ = pair_losses("orpo", SimpleNamespace(beta=0.25), logps[:3], logps[3:], counts[:3], counts[3:])
    (losses + logps[:3] / n_chosen).mean().backward()
    assert_grads_equal(lora_grads(model), lora_grads(trainer.model))
    assert float(loss) == pytest.approx(float((-policy[:3] / n_chosen).mean() - 0.25 * log_odds_ratio), rel=1e-5)
    assert n_rejected.min() > 0


@pytest.mark.slow
def test_dpo_matches_trl_on_smollm2(smollm2_dir, tokenizer, pairs, tmp_path):
    """The real SmolLM2-135M-Instruct with LoRA on its attention projections: DPO's reference
    log-probs, loss and gradients equal DPOTrainer's (one short pair, to stay quick on a CPU)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    short = pairs[:1]
    trainer = dpo_trainer(model, tokenizer, tmp_path, len(short), beta=0.1, loss_type=["sigmoid"])
    same_random_adapters(model, trainer.model, scale=0.02)
    loss, metrics, policy, reference = ours("dpo", model, short)
    inputs = dpo_inputs(trainer, short)
    trl_loss = trainer.compute_loss(trainer.model, inputs)
    trl_loss.backward()
    torch.testing.assert_close(reference, torch.cat(trainer.compute_ref_log_probs(trainer.model, inputs)),
                               rtol=1e-5, atol=1e-3)
    assert not torch.allclose(policy, reference)
    torch.testing.assert_close(loss, trl_loss.detach(), rtol=LOSS_RTOL, atol=LOSS_ATOL)
    assert_grads_equal(lora_grads(model), lora_grads(trainer.model))
