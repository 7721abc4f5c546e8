"""The generation engine: batched == unbatched, equal to transformers' generate, stop sequences."""

from __future__ import annotations

import random

import pytest
import torch

from tunelab.config.evaluate import GenerationConfig
from tunelab.evaluate.generation import WorkCounter, generate, length_sorted_batches


@pytest.fixture(scope="module")
def model(peaked_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(peaked_model_dir).eval()


def prompts(tokenizer, n=32, seed=0):
    rng = random.Random(seed)
    words = "the movie was great terrible plot acting summary dialogue person said hello why because".split()
    out = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 40)))
        chat = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False)
        out.append(tokenizer(chat, add_special_tokens=False)["input_ids"])
    return out


def test_batched_equals_unbatched_greedy_on_32_examples(model, tokenizer):
    ids = prompts(tokenizer)
    assert len({len(p) for p in ids}) > 10  # lengths differ: batches really are left padded
    settings = GenerationConfig(max_new_tokens=12)
    one = generate(model, tokenizer, ids, settings, batch_size=1)
    for batch_size in (8, 32):
        many = generate(model, tokenizer, ids, settings, batch_size=batch_size)
        assert [o.token_ids for o in many] == [o.token_ids for o in one]
        assert [o.text for o in many] == [o.text for o in one]
    assert len({tuple(o.token_ids) for o in one}) > 16  # outputs depend on the prompt: not a vacuous check


def test_sampling_is_batch_independent_and_seeded(model, tokenizer):
    ids = prompts(tokenizer, n=12, seed=1)
    settings = GenerationConfig(max_new_tokens=10, do_sample=True, temperature=1.3, top_k=50, top_p=0.95, seed=3)
    keys = [f"k{i}" for i in range(len(ids))]
    a = generate(model, tokenizer, ids, settings, batch_size=1, keys=keys)
    b = generate(model, tokenizer, ids, settings, batch_size=6, keys=keys)
    assert [o.token_ids for o in a] == [o.token_ids for o in b]
    c = generate(model, tokenizer, ids, settings.model_copy(update={"seed": 4}), batch_size=6, keys=keys)
    assert [o.token_ids for o in c] != [o.token_ids for o in a]


def test_matches_transformers_generate(model, tokenizer):
    """Left padding + mask-derived positions give exactly what HF generate gives one prompt at a time."""
    ids = prompts(tokenizer, n=6, seed=2)
    ours = generate(model, tokenizer, ids, GenerationConfig(max_new_tokens=10), batch_size=6)
    for p, o in zip(ids, ours):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = ref[0, len(p):].tolist()
        eos = {tokenizer.eos_token_id}
        expected = new[: next((i for i, t in enumerate(new) if t in eos), len(new))]
        assert o.token_ids == expected


def test_stop_sequence_cuts_text_and_ends_row(model, tokenizer):
    ids = prompts(tokenizer, n=4, seed=3)
    free = generate(model, tokenizer, ids, GenerationConfig(max_new_tokens=16), batch_size=4)
    text = free[0].text
    stop = text[len(text) // 2: len(text) // 2 + 2]
    assert stop.strip()
    counter = WorkCounter()
    cut = generate(model, tokenizer, ids, GenerationConfig(max_new_tokens=16, stop=[stop]), batch_size=4, counter=counter)
    assert cut[0].stop_reason == "stop"
    assert cut[0].text == text[: text.find(stop)]
    assert stop not in cut[0].text
    assert counter.generated_tokens < sum(len(o.token_ids) for o in free)  # stopped rows stop costing


def test_length_sorted_batches_cover_all_indices():
    lengths = [5, 1, 9, 3, 9, 2, 7]
    batches = length_sorted_batches(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert [lengths[i] for i in batches[0]] == [9, 9, 7]
