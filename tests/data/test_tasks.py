"""Task templates on the real shared datasets and on small inline records."""

import pytest

from tunelab.config.data import TaskConfig
from tunelab.data import DataError, build_task, prepare

from data_helpers import make_config

MMLU_COLUMNS = ["question", "A", "B", "C", "D", "answer"]


def _task(**kw):
    return TaskConfig.model_validate(kw)


def test_sst2_classification_verbalised_and_stratified(shared_data, tokenizer):
    task = _task(name="sst2", kind="classification", fields={"text": "sentence", "label": "label"},
                 labels={0: "negative", 1: "positive"}, source=str(shared_data / "sst2/sst2_glue_validation.tsv"))
    data = build_task(task, tokenizer, seed=42)
    assert data.labels == ["negative", "positive"]
    assert {s: len(v) for s, v in data.splits.items()} == {"train": 698, "validation": 87, "test": 87}
    for split, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        for label, n in (("positive", 444), ("negative", 428)):
            got = sum(ex.label == label for ex in data.splits[split])
            assert abs(got - n * ratio) < 1
    ex = data.splits["test"][0]
    assert ex.references == [ex.label] == [ex.target_text] and ex.label in data.labels
    assert ex.prompt_text.startswith("<|im_start|>system\n") and ex.prompt_text.endswith("<|im_start|>assistant\n")
    assert "Answer with one of: negative, positive." in ex.prompt_text


def test_labels_from_data_list_form_and_value_already_a_word(tokenizer):
    records = [{"text": f"t{i}", "label": lab} for i, lab in enumerate([2, 10, 1, 2, 10, 1])]
    data = build_task(_task(name="c", kind="classification", source={"records": records}), tokenizer)
    assert data.labels == ["1", "2", "10"]
    records = [{"text": "a", "label": 0}, {"text": "b", "label": "pos"}, {"text": "c", "label": 1.0}]
    data = build_task(_task(name="c", kind="classification", labels=["neg", "pos"], source={"records": records},
                            ratios={"train": 1, "validation": 0, "test": 0}), tokenizer)
    assert [ex.label for ex in data.splits["train"]] == ["neg", "pos", "pos"]


def test_dialogsum_given_splits_carry_three_references(shared_data, tokenizer):
    task = _task(name="dialogsum", kind="summarization", fields={"text": "dialogue", "target": "summary"},
                 splits={"train": str(shared_data / "dialogsum/dialogsum.dev.jsonl"),
                         "test": {"path": str(shared_data / "dialogsum/dialogsum.test.jsonl"),
                                  "fields": {"target": ["summary1", "summary2", "summary3"]}}})
    data = build_task(task, tokenizer, max_length=2048, seed=1, leak_check="report")
    assert {s: len(v) for s, v in data.splits.items()} == {"train": 444, "validation": 56, "test": 500}
    # the default removes dev dialogues duplicated in test from the training side; test stays whole
    cleaned = build_task(task, tokenizer, max_length=2048, seed=1)
    removed = cleaned.counts["duplicates_removed"]
    assert removed > 0 and len(cleaned.splits["test"]) == 500
    assert len(cleaned.splits["train"]) + len(cleaned.splits["validation"]) == 500 - removed
    test = data.splits["test"]
    assert all(len(ex.references) == 3 and ex.references[0] == ex.target_text for ex in test)
    assert test[0].source.endswith("dialogsum.test.jsonl:1") and test[0].source_index == 1
    assert all(len(ex.references) == 1 for ex in data.splits["train"])
    # no validation wanted: ratios override
    task = task.model_copy(update={"ratios": {"validation": 0}})
    data = build_task(task, tokenizer, max_length=2048, leak_check="report")
    assert len(data.splits["train"]) == 500 and data.splits["validation"] == []


def test_t0_completion_strips_endoftext(shared_data, tokenizer):
    task = _task(name="csqa", kind="completion", strip_suffix=["<|endoftext|>"],
                 source=str(shared_data / "t0_multitask_mix/commonsense_qa_question_answering.jsonl"))
    data = build_task(task, tokenizer)
    every = [ex for v in data.splits.values() for ex in v]
    assert len(every) == 200
    assert not any("<|endoftext|>" in ex.target_text for ex in every)
    first = min(every, key=lambda ex: ex.source_index)
    assert first.target_text == "ignore" and "- authoritarian\n" in first.prompt_text
    # without stripping the literal marker would be trained on
    raw = build_task(task.model_copy(update={"strip_suffix": []}), tokenizer)
    assert all(ex.target_text.endswith("<|endoftext|>") for ex in raw.splits["train"])


@pytest.mark.parametrize("answer_format", ["letter", "text"])
def test_mmlu_multiple_choice(shared_data, tokenizer, answer_format):
    task = _task(name="mmlu", kind="multiple_choice", fields={"choices": ["A", "B", "C", "D"]},
                 answer_format=answer_format, few_shot=1,
                 splits={"train": {"path": str(shared_data / "mmlu_subset/dev/*.csv"), "columns": MMLU_COLUMNS},
                         "test": {"path": str(shared_data / "mmlu_subset/test/anatomy_test.csv"),
                                  "columns": MMLU_COLUMNS}},
                 ratios={"validation": 0})
    data = build_task(task, tokenizer, seed=3)
    assert len(data.splits["train"]) == 30 and len(data.splits["test"]) == 135
    ex = data.splits["test"][0]
    # first row of anatomy_test.csv; its fields hold commas inside quotes
    assert ex.choice_texts == ["paralysis of the facial muscles.",
                               "paralysis of the facial muscles and loss of taste.",
                               "paralysis of the facial muscles, loss of taste and lacrimation.",
                               "paralysis of the facial muscles, loss of taste, lacrimation and decreased salivation."]
    assert ex.answer_index == 0 and data.splits["test"][1].answer_index == 1
    assert ex.choices == (["A", "B", "C", "D"] if answer_format == "letter" else ex.choice_texts)
    assert ex.target_text == ex.choices[0]
    assert "C. paralysis of the facial muscles, loss of taste and lacrimation.\n" in ex.prompt_text
    # one shot from the dev split, rendered as an earlier user/assistant turn
    assert ex.prompt_text.count("<|im_start|>assistant\n") == 2


def test_multiple_choice_answer_as_index_or_text_and_bad_answer(tokenizer):
    records = [{"q": "Pick b", "opts": ["a", "b", "c"], "ans": 1}, {"q": "Pick c", "opts": ["a", "b", "c"], "ans": "c"}]
    task = _task(name="m", kind="multiple_choice", fields={"question": "q", "choices": "opts", "answer": "ans"},
                 source={"records": records}, ratios={"train": 1, "validation": 0, "test": 0})
    assert [ex.answer_index for ex in build_task(task, tokenizer).splits["train"]] == [1, 2]
    bad = task.model_copy(update={"source": task.source.model_copy(update={"records": [{**records[0], "ans": "E"}]})})
    with pytest.raises(DataError, match=r"records\[0\]: field 'ans': answer 'E' is not one of the letters A, B, C"):
        build_task(bad, tokenizer)


def test_alpaca_instruction_with_and_without_input(shared_data, tokenizer):
    task = _task(name="alpaca", kind="instruction", source=str(shared_data / "instructions/llamafactory_alpaca_en_demo.json"))
    data = build_task(task, tokenizer, max_length=4096, leak_check="report")  # every record, duplicates too
    every = [ex for v in data.splits.values() for ex in v]
    assert len(every) == 999
    with_input = [ex for ex in every if "\n\n" in ex.user_text]
    assert 350 < len(with_input) < 700
    assert every[0].source.endswith("llamafactory_alpaca_en_demo.json: record 0") or any(
        ex.source.endswith(": record 0") for ex in every)


def test_translation_and_qa_defaults(tokenizer):
    task = _task(name="t", kind="translation", source_lang="English", target_lang="French",
                 source={"records": [{"source": "cat", "target": "chat"}]}, ratios={"test": 1})
    ex = build_task(task, tokenizer).splits["test"][0]
    assert "Translate the following text from English to French.\n\ncat" in ex.prompt_text
    task = _task(name="q", kind="qa", fields={"context": "ctx", "answer": "answers"},
                 source={"records": [{"question": "Who?", "ctx": "Ann met Bob.", "answers": ["Ann", "ann"]}]},
                 ratios={"test": 1})
    ex = build_task(task, tokenizer).splits["test"][0]
    assert ex.references == ["Ann", "ann"] and "Context: Ann met Bob.\n\nQuestion: Who?" in ex.prompt_text


def test_chat_requires_assistant_last(tokenizer):
    task = _task(name="c", kind="chat", source={"records": [{"messages": [{"role": "user", "content": "hi"},
                                                                          {"role": "user", "content": "?"}]}]})
    with pytest.raises(DataError, match="last message must be from the assistant"):
        build_task(task, tokenizer)


def test_user_jinja_template_is_sandboxed(tokenizer):
    records = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}]
    base = dict(name="c", kind="classification", labels={0: "neg", 1: "pos"}, source={"records": records},
                ratios={"train": 1, "validation": 0, "test": 0})
    task = _task(**base, template="Review: {{ text | upper }}\nOptions: {{ labels | join('/') }}")
    ex = build_task(task, tokenizer).splits["train"][0]
    assert ex.user_text == "Review: GOOD\nOptions: neg/pos"
    for evil in ("{{ record.__class__.__mro__ }}", "{{ record.update({'x': 1}) }}",
                 "{{ cycler.__init__.__globals__.os }}"):
        with pytest.raises(DataError):
            build_task(_task(**base, template=evil), tokenizer)


def test_leak_check_reports_and_removes(tmp_path, tokenizer):
    train = [{"question": f"Question {i}?", "answer": "x"} for i in range(20)]
    test = [{"question": "Question 3?", "answer": "x"}, {"question": "  question 4 ", "answer": "y"},
            {"question": "Fresh one?", "answer": "z"}]
    task = {"name": "q", "kind": "qa", "ratios": {"validation": 0},
            "splits": {"train": {"records": train}, "test": {"records": test}}}
    data = prepare(make_config(tmp_path, [task], leak_check="report"), tokenizer)
    assert data.tasks["q"].leaks["train/test"] == {"exact": 1, "normalised": 2}
    assert len(data.tasks["q"].splits["train"]) == 20
    data = prepare(make_config(tmp_path, [task], leak_check="remove"), tokenizer)
    q = data.tasks["q"]
    assert len(q.splits["train"]) == 18 and len(q.splits["test"]) == 3
    assert q.counts["by_split"]["train"]["duplicates_removed"] == 2
    assert q.counts["duplicates_removed"] == 2


def test_few_shot_draws_from_train_never_itself_and_is_deterministic(tokenizer):
    records = [{"question": f"Q{i}?", "answer": f"A{i}"} for i in range(30)]
    task = _task(name="q", kind="qa", few_shot=3, source={"records": records})
    a, b = build_task(task, tokenizer, seed=5), build_task(task, tokenizer, seed=5)
    train_answers = {ex.target_text for ex in a.splits["train"]}
    for split in ("train", "test"):
        for ex, twin in zip(a.splits[split], b.splits[split]):
            assert ex.prompt_text == twin.prompt_text
            assert ex.prompt_text.count("<|im_start|>assistant\n") == 4
            shots = [line for line in ex.prompt_text.split("<|im_start|>assistant\n")[1:-1]]
            answers = [s.split("<|im_end|>")[0] for s in shots]
            assert len(set(answers)) == 3 and ex.target_text not in answers
            assert set(answers) <= train_answers


def test_config_mistakes_are_named(tokenizer):
    from tunelab.config import ConfigError, load_config

    task = _task(name="c", kind="classification", fields={"txt": "sentence"}, source={"records": [{"a": 1}]})
    with pytest.raises(DataError, match=r"unknown field role\(s\) txt for kind classification; its roles are: "
                                        r"text, text_pair, label"):
        build_task(task, tokenizer)
    with pytest.raises(ConfigError, match="'labels' applies to kind classification only"):
        load_config(data={"data": {"tasks": [{"name": "q", "kind": "qa", "labels": ["a"], "source": "x.jsonl"}]}})
    with pytest.raises(ConfigError, match="did you mean 'few_shot'"):
        load_config(data={"data": {"tasks": [{"name": "q", "kind": "qa", "fewshot": 2, "source": "x.jsonl"}]}})


def test_optional_context_column_is_used_when_present(tokenizer):
    task = _task(name="q", kind="qa", source={"records": [{"question": "Who?", "context": "Ann.", "answer": "Ann"},
                                                          {"question": "Why?", "answer": "So"}]},
                 ratios={"train": 1, "validation": 0, "test": 0})
    first, second = build_task(task, tokenizer).splits["train"]
    assert "Context: Ann.\n\nQuestion: Who?" in first.user_text and "Context" not in second.user_text
