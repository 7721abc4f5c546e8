"""The model-family matrix: every family x method through the code paths tunelab itself runs.

Each family is a tiny random model built once per session (families.py). For every method that
applies, tunelab's numbers are compared with transformers' own on the same weights: the training
loss (CompletionLoss) and its gradients, packed vs unpacked losses, batched greedy generation,
multiple-choice log-likelihoods, and merged adapters; tests/models/test_family_runs.py takes a LoRA
run of each family through resume and `export --merge`.
What tunelab decides for a family (fast loss path or not, packing refused or not, a method refused)
comes from its probes and checks; the tables of expected outcomes in families.py are the ones
docs/training.md lists.
"""

from __future__ import annotations

import pytest
import torch

from families import CAUSAL, FAMILIES, PACKING_REFUSED, PLAIN_LOSS, REFUSED
from tunelab.config import ConfigError
from tunelab.config.evaluate import GenerationConfig
from tunelab.config.train import TrainConfig
from tunelab.evaluate.generation import WorkCounter, generate
from tunelab.evaluate.loglikelihood import MIN_RUN, score_requests, score_shared_context, sliding_window
from tunelab.models.tuners import apply_method
from tunelab.train.batching import IGNORE, Sequence, collate, pack_sequences, to_sequences
from tunelab.train.loss import CompletionLoss
from tunelab.train.probes import check_packing

METHODS = ("full", "lora", "dora", "ia3", "prompt_tuning", "prefix_tuning")
CASES = [(f, m) for f in FAMILIES for m in METHODS]
VIRTUAL = ("prompt_tuning", "prefix_tuning")

EXAMPLES = [("Review: good great lovely film\nSentiment:", " positive"), ("Review: dull\nSentiment:", " negative"),
            ("Question: what is two plus two?\nAnswer:", " four, I think")]
CHOICES = [("The capital of France is", [" Paris", " a city in Texas", " Rome"]),
           ("Two plus two equals", [" four", " five and a half"])]


def tuned(family_model, family: str, method: str, seed: int = 0):
    """(model, tokenizer, architecture): the method attached as training attaches it, its trainable
    weights moved off their identity initialisation (LoRA's B = 0, IA3's ones), eval mode."""
    model, tokenizer = family_model(family)
    architecture = "seq2seq" if model.config.is_encoder_decoder else "causal"
    cfg = TrainConfig(method=method, lora={"r": 4}, prompt_tuning={"num_virtual_tokens": 3},
                      prefix_tuning={"num_virtual_tokens": 3})
    model = apply_method(model, cfg, architecture, model.name_or_path)
    if method != "full":
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval(), tokenizer, architecture


def sequences(tokenizer, architecture) -> list[Sequence]:
    class Ex:
        def __init__(self, prompt, answer):
            p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            self.input_ids, self.label_ids = p + a, [IGNORE] * len(p) + a

    return to_sequences([Ex(p, a) for p, a in EXAMPLES], architecture)


def own_loss(model, batch: dict):
    """The model's own (peft's, for adapters) mean token loss on a collated batch."""
    return model(**batch, use_cache=False).loss


@pytest.mark.parametrize("family,method", CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_training_loss_and_gradients_are_the_models_own(family_model, family, method):
    if (family, method) in REFUSED:
        with pytest.raises(ConfigError, match=REFUSED[family, method]):
            tuned(family_model, family, method)
        return
    model, tokenizer, architecture = tuned(family_model, family, method)
    loss_model = CompletionLoss(model, architecture, method)
    fast = architecture == "causal" and method not in VIRTUAL and family not in PLAIN_LOSS
    assert loss_model.skip_masked_head == fast
    batch = collate(sequences(tokenizer, architecture), tokenizer.pad_token_id).tensors
    trainable = [p for p in model.parameters() if p.requires_grad]
    loss_sum, n = loss_model(**batch)
    ours = loss_sum / n
    ours_grads = torch.autograd.grad(ours, trainable)
    theirs = own_loss(model, batch)
    their_grads = torch.autograd.grad(theirs, trainable)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    for a, b in zip(ours_grads, their_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["granite", "cohere"])
def test_the_fast_path_would_be_wrong_where_the_probe_refuses_it(family_model, family):
    # The measurement: a Granite loss through head(body(x)) was 18.53 where the model gives 10.92.
    # The logits of these random models are small, so the error is too, but far above float rounding
    # (the loss test's tolerance is 1e-5); Gemma-2's soft-capping at 30 barely moves them at all.
    model, tokenizer, _ = tuned(family_model, family, "lora")
    loss_model = CompletionLoss(model, "causal", "lora")
    batch = collate(sequences(tokenizer, "causal"), tokenizer.pad_token_id).tensors
    with torch.no_grad():
        theirs = float(own_loss(model, batch))
        loss_model.skip_masked_head = True
        loss_sum, n = loss_model(**batch)
    assert abs(float(loss_sum / n) - theirs) > 1e-4 * theirs


@pytest.mark.parametrize("family", ["mixtral", "qwen3_moe"])
def test_lora_dropout_on_fused_experts_is_refused_with_what_to_do(family_model, family):
    model, _ = family_model(family)
    with pytest.raises(ConfigError, match=f"lora: peft cannot apply it to {family} models.*dropout: 0"):
        apply_method(model, TrainConfig(method="lora", lora={"dropout": 0.1}), "causal", model.name_or_path)


@pytest.mark.parametrize("family", CAUSAL)
def test_packed_examples_keep_their_own_loss_or_packing_is_refused(family_model, family):
    model, tokenizer, _ = tuned(family_model, family, "lora")
    seqs = sequences(tokenizer, "causal")
    loss_model = CompletionLoss(model, "causal", "lora")

    def loss_of(rows):
        return float(loss_model(**collate(rows, tokenizer.pad_token_id).tensors)[0])

    def packed_loss(i):  # example i's loss inside one row holding all three (the others unlabelled)
        only_i = [Sequence(s.input_ids, s.label_ids if j == i else [IGNORE] * len(s.label_ids))
                  for j, s in enumerate(seqs)]
        (row,) = pack_sequences(only_i, 1024)
        return loss_of([row])

    with torch.no_grad():
        packed = [packed_loss(i) for i in range(len(seqs))]
        alone = [loss_of([s]) for s in seqs]
    if family in PACKING_REFUSED:
        with pytest.raises(ConfigError, match=model.config.model_type):
            check_packing(model)
        assert packed != pytest.approx(alone, rel=1e-4)  # the refusal is not needed caution
        return
    check_packing(model)
    assert packed == pytest.approx(alone, rel=1e-5)


def test_packing_is_refused_for_encoder_decoders(family_model):
    model, _, _ = tuned(family_model, "t5", "lora")
    with pytest.raises(ConfigError, match="t5 is an encoder-decoder"):
        check_packing(model)


ENGINE_CASES = [(f, m) for f in FAMILIES for m in ("lora", "prompt_tuning", "prefix_tuning")
                if (f, m) not in REFUSED]


def reference_generation(model, tokenizer, prompt: list[int], max_new_tokens: int) -> list[int]:
    """One prompt alone, greedy, cut at the first EOS: transformers' generate, or for prompt/prefix tuning
    greedy decoding by peft's forward over the whole sequence (the forward training uses). peft's own
    generate does not agree with that forward for these methods under transformers 5 (measured: Qwen3
    prefix tuning), so it cannot be the reference."""
    eos = {tokenizer.eos_token_id, model.config.eos_token_id}
    if getattr(model, "active_peft_config", None) is not None and model.active_peft_config.is_prompt_learning:
        seq2seq, new = model.config.is_encoder_decoder, []
        start = [model.config.decoder_start_token_id] if seq2seq else []
        with torch.no_grad():
            while len(new) < max_new_tokens:
                inputs = ({"input_ids": torch.tensor([prompt]), "decoder_input_ids": torch.tensor([start + new])}
                          if seq2seq else {"input_ids": torch.tensor([prompt + new])})
                token = int(model(**inputs).logits[0, -1].argmax())
                if token in eos:
                    break
                new.append(token)
        return new
    ids = torch.tensor([prompt])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id)[0].tolist()
    new = out[1:] if model.config.is_encoder_decoder else out[len(prompt):]
    return new[:next((i for i, t in enumerate(new) if t in eos), len(new))]


@pytest.mark.parametrize("family,method", ENGINE_CASES, ids=[f"{f}-{m}" for f, m in ENGINE_CASES])
def test_batched_greedy_generation_is_generate_one_prompt_at_a_time(family_model, family, method):
    model, tokenizer, _ = tuned(family_model, family, method)
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p, _ in EXAMPLES]
    outs = generate(model, tokenizer, prompts, GenerationConfig(max_new_tokens=6), batch_size=3)
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == reference_generation(model, tokenizer, prompt, 6)


def direct_logprob(model, context: list[int], option: list[int]) -> float:
    """log P(option | context) from one unpadded forward pass of the model on its own."""
    if model.config.is_encoder_decoder:
        logits = model(input_ids=torch.tensor([context]), labels=torch.tensor([option])).logits[0]
    else:
        whole = torch.tensor([context + option])
        logits = model(input_ids=whole).logits[0, -whole.shape[1]:][len(context) - 1:-1]
    return float(torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(option)[:, None]).sum())


@pytest.mark.parametrize("family,method", ENGINE_CASES, ids=[f"{f}-{m}" for f, m in ENGINE_CASES])
def test_multiple_choice_loglikelihoods_are_a_direct_computation(family_model, family, method):
    model, tokenizer, _ = tuned(family_model, family, method)

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    groups = [(ids(ctx), [ids(o) for o in options]) for ctx, options in CHOICES]
    shared = score_shared_context(model, groups, batch_size=2, pad_id=tokenizer.pad_token_id)
    single = score_requests(model, [(ctx, o) for ctx, opts in groups for o in opts], batch_size=5,
                            pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        direct = [direct_logprob(model, ctx, o) for ctx, opts in groups for o in opts]
    assert [r["logprob"] for g in shared for r in g] == pytest.approx(direct, abs=1e-4)
    assert [r["logprob"] for r in single] == pytest.approx(direct, abs=1e-4)


@pytest.mark.parametrize("family", CAUSAL)
def test_a_shared_few_shot_prefix_runs_once_with_the_same_loglikelihoods(family_model, family):
    model, tokenizer, _ = tuned(family_model, family, "lora")

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    shots = ids("Q: the sky is\nA: blue\n\n" * 6)
    questions = [(f"Q: what is {i} + {i}?\nA:", [f" {2 * i}", f" {i} and a half"]) for i in range(MIN_RUN - 2)]
    groups = [(shots + ids(ctx), [ids(o) for o in options]) for ctx, options in CHOICES + questions]
    groups += [(ids(ctx), [ids(o) for o in options]) for ctx, options in CHOICES]  # no shared prefix
    counter = WorkCounter()
    shared = score_shared_context(model, groups, batch_size=3, pad_id=tokenizer.pad_token_id, counter=counter)
    with torch.no_grad():
        direct = [direct_logprob(model, ctx, o) for ctx, opts in groups for o in opts]
    assert [r["logprob"] for g in shared for r in g] == pytest.approx(direct, abs=1e-4)
    context_tokens = sum(len(ctx) for ctx, _ in groups)
    option_tokens = sum(len(o) for _, opts in groups for o in opts if len(o) > 1)
    # the shots ran once, not MIN_RUN times; not under a sliding window (loglikelihood.py)
    longest = max(len(ctx) + max(map(len, opts)) for ctx, opts in groups)
    saved = 0 if (sliding_window(model) or longest) < longest else (MIN_RUN - 1) * len(shots)
    assert counter.prompt_tokens == context_tokens - saved + option_tokens


MERGE_CASES = [(f, m) for f in FAMILIES for m in ("lora", "dora", "ia3") if (f, m) not in REFUSED]


@pytest.mark.parametrize("family,method", MERGE_CASES, ids=[f"{f}-{m}" for f, m in MERGE_CASES])
def test_merging_an_adapter_keeps_its_logits(family_model, family, method):
    # What `tunelab export --merge` does to the adapter (merge_and_unload); test_family_runs.py takes a
    # LoRA run through export_run itself and plain transformers.
    model, tokenizer, _ = tuned(family_model, family, method)
    ids = torch.tensor([tokenizer(EXAMPLES[0][0], add_special_tokens=False)["input_ids"]])
    extra = {"decoder_input_ids": ids[:, :4]} if model.config.is_encoder_decoder else {}
    with torch.no_grad():
        adapter = model(input_ids=ids, **extra).logits
        merged = model.merge_and_unload()(input_ids=ids, **extra).logits
    torch.testing.assert_close(merged, adapter, rtol=1e-4, atol=1e-5)
