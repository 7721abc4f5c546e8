"""Tokenisation against SmolLM2's own chat template: prompt + answer + <|im_end|> is exactly the
tokenizer's rendering of the whole conversation; labels mask the prompt; over-length counted."""

import copy

from tunelab.config.data import TaskConfig
from tunelab.data import build_task, prepare
from tunelab.data.tokenize import IGNORE_INDEX

from data_helpers import make_config

TASKS = [
    {"name": "summ", "kind": "summarization", "fields": {"text": "d", "target": "s"},
     "source": {"records": [{"d": f"#Person1#: Hi {i}!\n#Person2#: Hello, how are you?", "s": f" They greet {i}."}
                            for i in range(12)]}},
    {"name": "chat", "kind": "chat", "few_shot": 0, "system_prompt": "Be brief.",
     "source": {"records": [{"messages": [{"role": "user", "content": f"Hi {i}"},
                                          {"role": "assistant", "content": "Hello!"},
                                          {"role": "user", "content": "2+2?"},
                                          {"role": "assistant", "content": "4"}]} for i in range(10)]}},
    {"name": "cls", "kind": "classification", "few_shot": 2, "labels": ["neg", "pos"],
     "source": {"records": [{"text": f"text {i} é 日本", "label": i % 2} for i in range(20)]}},
]



def test_prompt_plus_answer_equals_full_conversation_rendering(tmp_path, tokenizer):
    data = prepare(make_config(tmp_path, TASKS, max_length=512), tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    checked = 0
    for task in data.tasks.values():
        for ex in task.splits["train"] + task.splits["test"]:
            # the whole conversation as the tokenizer renders it (answer turn included)
            full_text = ex.prompt_text + ex.target_text + "<|im_end|>\n"
            assert full_text.endswith(f"<|im_start|>assistant\n{ex.target_text}<|im_end|>\n")
            full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
            assert full_ids[: len(ex.input_ids)] == ex.input_ids
            assert tokenizer.decode(full_ids[len(ex.input_ids):]) == "\n"
            assert ex.target_ids[-1] == im_end
            assert ex.label_ids[len(ex.prompt_ids):] == ex.target_ids
            if task.kind != "chat":  # a chat's earlier answers are trained too (test_conversations.py)
                assert ex.label_ids[:len(ex.prompt_ids)] == [IGNORE_INDEX] * len(ex.prompt_ids)
            assert ex.input_ids == ex.prompt_ids + ex.target_ids
            checked += 1
    assert checked > 20


def test_rendering_matches_apply_chat_template_on_the_messages(tmp_path, tokenizer):
    task = TaskConfig.model_validate(TASKS[1])
    ex = build_task(task, tokenizer, tmp_path, seed=1).splits["train"][0]
    i = ex.source_index  # records[i] says "Hi {i}"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Hi {i}"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
    assert ex.prompt_text == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": "4"}], tokenize=False)
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(ex.input_ids)] == ex.input_ids and len(full_ids) == len(ex.input_ids) + 1
    # every assistant answer is trained (train_on: all, the default), each with its <|im_end|>
    assert tokenizer.decode([t for t in ex.label_ids if t != IGNORE_INDEX]) == "Hello!<|im_end|>4<|im_end|>"
    last = build_task(task.model_copy(update={"train_on": "last"}), tokenizer, tmp_path, seed=1).splits["train"][0]
    assert tokenizer.decode([t for t in last.label_ids if t != IGNORE_INDEX]) == "4<|im_end|>"
    assert last.input_ids == ex.input_ids


def test_overlength_truncates_prompt_from_the_left_or_rejects(tmp_path, tokenizer):
    long = {"name": "long", "kind": "qa", "ratios": {"train": 1, "validation": 0, "test": 0},
            "source": {"records": [{"question": "word " * n, "answer": "yes"} for n in (1, 200, 400)]}}
    data = prepare(make_config(tmp_path, [long], max_length=128), tokenizer)
    exs = data.tasks["long"].splits["train"]
    assert [ex.truncated for ex in exs] == [False, True, True]
    assert all(len(ex.input_ids) <= 128 for ex in exs) and len(exs[1].input_ids) == 128
    assert exs[1].target_text == "yes" and exs[1].prompt_text.endswith("<|im_start|>assistant\n")
    assert exs[1].prompt_ids == tokenizer(exs[1].prompt_text, add_special_tokens=False)["input_ids"]
    c = data.tasks["long"].counts
    assert (c["kept"], c["truncated"], c["rejected"]) == (3, 2, 0)

    data = prepare(make_config(tmp_path, [long], max_length=128, overlength="reject"), tokenizer)
    c = data.tasks["long"].counts
    assert (c["kept"], c["truncated"], c["rejected"]) == (1, 0, 2)
    assert len(data.report["rejected"]) == 2 and "> max_length 128" in data.report["rejected"][0]


def test_plain_format_for_a_tokenizer_without_chat_template(tmp_path, tokenizer):
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    task = TaskConfig.model_validate({"name": "c", "kind": "completion",
                                      "source": {"records": [{"prompt": "The sky is", "completion": " blue"}]},
                                      "ratios": {"train": 1, "validation": 0, "test": 0}})
    ex = build_task(task, plain, tmp_path).splits["train"][0]
    assert ex.prompt_text == "The sky is"
    assert ex.target_ids[-1] == plain.eos_token_id
    assert plain.decode(ex.input_ids) == "The sky is blue" + plain.eos_token
    qa = TaskConfig.model_validate({"name": "q", "kind": "qa", "system_prompt": "Be brief.",
                                    "source": {"records": [{"question": "Why?", "answer": "Because."}]},
                                    "ratios": {"train": 1, "validation": 0, "test": 0}})
    ex = build_task(qa, plain, tmp_path).splits["train"][0]
    assert ex.prompt_text == "Be brief.\n\nAnswer the question.\n\nQuestion: Why?\n"


def test_preparing_thousands_of_examples_uses_batched_tokenisation(tmp_path, tokenizer, monkeypatch):
    calls = []
    original = type(tokenizer).__call__

    def counting(self, text, *args, **kwargs):
        calls.append(len(text) if isinstance(text, list) else 1)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    task = {"name": "big", "kind": "qa",
            "source": {"records": [{"question": f"q {i}?", "answer": f"a {i}"} for i in range(3000)]}}
    data = prepare(make_config(tmp_path, [task]), tokenizer)
    assert data.tasks["big"].counts["kept"] == 3000
    assert len(calls) < 20  # batches of 1024, not one call per example


def test_encode_batch_gives_the_wrappers_ids(tokenizer):
    """encode_batch goes straight to the Rust backend when it can: the same ids as the
    transformers call, special tokens in the text, Unicode, empty texts and every batch edge;
    a tokenizer with truncation set on its backend takes the wrapper."""
    import copy as copy_

    from tunelab.data.tokenize import _backend, encode_batch

    texts = ["", " ", "Hello<|im_end|>\n", "<|im_start|>user\nHi é 日本 🙂<|im_end|>", "a  b\t\tc\r\n"] * 3
    texts += [f"text {i} " * (i % 7) for i in range(40)]
    assert _backend(tokenizer) is not None
    assert encode_batch(tokenizer, texts, batch_size=7) == tokenizer(texts, add_special_tokens=False)["input_ids"]
    truncating = copy_.deepcopy(tokenizer)
    truncating._tokenizer.enable_truncation(max_length=3)
    assert _backend(truncating) is None
    assert encode_batch(truncating, texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]
