"""Preference data (kinds `preference` and `kto`): TRL's and LLaMA-Factory's layouts, rendered
through the chat template with only the final answer scored, one shared prompt per pair, the
length policy, leak check, one-line errors and `data preview`."""

import json

import pytest

from tunelab.data import DataError, build_task, prepare
from tunelab.data.preview import preview_summary, print_preview
from tunelab.data.tokenize import IGNORE_INDEX

from data_helpers import make_config, write_jsonl

DPO = "preferences/llamafactory_dpo_en_demo.json"
KTO = "preferences/llamafactory_kto_en_demo.json"


def build(tokenizer, kind, records, **task):
    return build_task({"name": "p", "kind": kind, "source": {"records": records}, **task}, tokenizer, seed=1)


def all_examples(task):
    return [e for s in ("train", "validation", "test") for e in task.splits[s]]


def rendered(tokenizer, messages) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False)


def test_llamafactory_pairs_render_the_whole_context_and_score_only_the_final_answer(tokenizer, shared_data):
    raw = json.loads((shared_data / DPO).read_text())
    task = build_task({"name": "dpo", "kind": "preference", "source": str(shared_data / DPO)}, tokenizer,
                      max_length=100_000, leak_check="off")
    examples = all_examples(task)
    assert task.counts["read"] == 300 and len(examples) == 300
    multi = 0
    for ex in examples:
        record = raw[ex.source_index]
        context = [{"role": {"human": "user", "gpt": "assistant", "system": "system"}[m["from"]], "content": m["value"]}
                   for m in record["conversations"]]
        for answer, ids in ((record["chosen"]["value"], ex.target_ids), (record["rejected"]["value"], ex.rejected_ids)):
            # the tokens are the template's own rendering of context + answer, up to its end-of-turn token
            text = tokenizer.decode(ex.prompt_ids + ids, skip_special_tokens=False)
            full = rendered(tokenizer, context + [{"role": "assistant", "content": answer}])
            assert full.startswith(text) and text.endswith("<|im_end|>")
        assert ex.label_ids == [IGNORE_INDEX] * len(ex.prompt_ids) + ex.target_ids  # only the final answer
        assert ex.target_text == record["chosen"]["value"] and ex.rejected_text == record["rejected"]["value"]
        multi += len(record["conversations"]) > 1
    assert multi > 100  # earlier turns are context, inside the shared prompt


def test_trl_layouts_give_the_same_pair(tokenizer):
    context = [{"role": "user", "content": "Name a colour."}]
    plain = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."}
    conversational = {"prompt": context, "chosen": [{"role": "assistant", "content": "Blue."}],
                      "rejected": [{"role": "assistant", "content": "Seven."}]}
    implicit = {"chosen": context + [{"role": "assistant", "content": "Blue."}],
                "rejected": context + [{"role": "assistant", "content": "Seven."}]}
    sharegpt = {"conversations": [{"from": "human", "value": "Name a colour."}],
                "chosen": {"from": "gpt", "value": "Blue."}, "rejected": {"from": "gpt", "value": "Seven."}}
    got = []
    for record in (plain, conversational, implicit, sharegpt):
        (ex,) = all_examples(build(tokenizer, "preference", [record]))
        got.append((ex.prompt_ids, ex.target_ids, ex.rejected_ids))
    assert all(g == got[0] for g in got)
    prompt, chosen, rejected = got[0]
    assert tokenizer.decode(prompt + chosen) == rendered(tokenizer, context + [
        {"role": "assistant", "content": "Blue."}]).rstrip("\n")
    assert tokenizer.decode(rejected) == "Seven.<|im_end|>"


def test_kto_layouts(tokenizer, shared_data):
    raw = json.loads((shared_data / KTO).read_text())
    task = build_task({"name": "kto", "kind": "kto", "source": str(shared_data / KTO)}, tokenizer,
                      max_length=100_000, leak_check="off")
    examples = all_examples(task)
    assert len(examples) == 300 and sum(e.desirable for e in examples) == 150
    for ex in examples[:50]:
        record = raw[ex.source_index]
        assert ex.desirable is record["label"] and ex.rejected_ids is None
        assert ex.target_text == record["messages"][-1]["content"]
        assert ex.label_ids == [IGNORE_INDEX] * len(ex.prompt_ids) + ex.target_ids
    trl = [{"prompt": "Hi", "completion": "Hello!", "label": True},
           {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Go away."}],
            "label": "false"}]
    good, bad = all_examples(build(tokenizer, "kto", trl))
    assert (good.desirable, bad.desirable) == (True, False) and good.prompt_ids == bad.prompt_ids


@pytest.mark.parametrize("record,message", [
    ({"prompt": "Q", "chosen": "A"}, "2: missing field 'rejected'"),
    ({"prompt": "Q", "chosen": "A", "rejected": ""}, "2: field 'rejected' is empty"),
    ({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}], "chosen": "B",
      "rejected": "C"}, "2: field 'conversations': the context must end with a user"),
    ({"conversations": [{"from": "robot", "value": "Q"}], "chosen": "B", "rejected": "C"},
     r"2: field 'conversations\[0\]'.from must be one of"),
    ({"prompt": "Q", "chosen": {"role": "user", "content": "B"}, "rejected": "C"},
     "2: field 'chosen' must be an assistant message"),
    ({"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
      "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "B"}]},
     "2: fields 'chosen' and 'rejected' must share every message but the last"),
])
def test_bad_pairs_name_file_line_and_field(tokenizer, tmp_path, record, message):
    good = {"prompt": "Q0", "chosen": "A0", "rejected": "B0"}
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, record])
    with pytest.raises(DataError, match=f"pairs.jsonl:{message}"):
        build_task({"name": "p", "kind": "preference", "source": path}, tokenizer)


def test_bad_kto_label_is_named(tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "kto.jsonl", [{"prompt": "Q", "completion": "A", "label": "maybe"}])
    with pytest.raises(DataError, match="kto.jsonl:1: field 'label' must be true or false, got 'maybe'"):
        build_task({"name": "k", "kind": "kto", "source": path}, tokenizer)
    policy_cfg = make_config(tmp_path, [{"name": "k", "kind": "kto", "source": "kto.jsonl"}], on_error="skip",
                             cache=False)
    data = prepare(policy_cfg, tokenizer)  # skip mode: listed, not fatal
    (line,) = data.report["skipped"]
    assert line.endswith("kto.jsonl:1: field 'label' must be true or false, got 'maybe'")


def test_length_policy_keeps_both_answers_whole(tokenizer):
    long_prompt = " ".join(["word"] * 80)
    records = [{"prompt": long_prompt, "chosen": "Short.", "rejected": "A much longer rejected answer, " * 3}]
    (ex,) = all_examples(build_task({"name": "p", "kind": "preference", "source": {"records": records}},
                                    tokenizer, max_length=48))
    assert ex.truncated and len(ex.prompt_ids) + len(ex.rejected_ids) == 48  # the longer answer fits exactly
    assert tokenizer.decode(ex.target_ids) == "Short.<|im_end|>"
    task = build_task({"name": "p", "kind": "preference", "source": {"records": records}}, tokenizer,
                      max_length=48, overlength="reject")
    assert task.counts["rejected"] == 1 and not all_examples(task)


def test_leak_check_and_splits_on_real_pairs(tokenizer, shared_data, tmp_path):
    """A test pair whose context is also in the training file: removed from train, the test split intact."""
    first = json.loads((shared_data / DPO).read_text())[0]
    test_pair = {**first, "chosen": {"from": "gpt", "value": "Another answer."}}
    cfg = make_config(tmp_path, [{"name": "dpo", "kind": "preference",
                                  "splits": {"train": str(shared_data / DPO), "test": {"records": [test_pair]}}}],
                      max_length=100_000, cache=False)
    data = prepare(cfg, tokenizer)
    task = data.tasks["dpo"]
    sizes = {s: len(task.splits[s]) for s in ("train", "validation", "test")}
    assert sum(sizes.values()) + task.counts["duplicates_removed"] == 301 and sizes["test"] == 1
    assert task.leaks["train/test"]["exact"] >= 1 and task.counts["by_split"]["train"]["duplicates_removed"] >= 1
    test_keys = {e.content_key for e in task.splits["test"]}
    assert not any(e.content_key in test_keys for e in task.splits["train"] + task.splits["validation"])
    assert len(data.train_epoch(0)) == sizes["train"]


def test_preview_shows_chosen_and_rejected_spans(tokenizer, shared_data, tmp_path):
    from rich.console import Console

    cfg = make_config(tmp_path, [{"name": "dpo", "kind": "preference", "source": str(shared_data / DPO), "limit": 20},
                                 {"name": "kto", "kind": "kto", "source": str(shared_data / KTO), "limit": 20}],
                      max_length=512, cache=False)
    summary = preview_summary(prepare(cfg, tokenizer), tokenizer, n=1)
    pair, unpaired = summary["examples"]
    assert pair["pieces"][-1][1] and pair["pieces"][-1][0].endswith("<|im_end|>")
    ((label, pieces),) = pair["alternatives"]
    assert label == "rejected" and pieces[0][1] and pieces[0][0].endswith("<|im_end|>")
    assert unpaired["desirable"] in (True, False) and "alternatives" not in unpaired
    console = Console(record=True, width=120)
    print_preview(summary, console, plain=True)
    text = console.export_text()
    assert "rejected (after the same prompt):" in text and "desirable:" in text
