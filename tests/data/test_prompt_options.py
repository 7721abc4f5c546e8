"""Prompts exactly as the user or a peer (lm-evaluation-harness) defines them: target and few-shot
delimiters, several sources per split with constant fields, grouped few-shot with the `first`
sampler, a record-dependent system prompt, label synonyms, and lm-eval's MMLU prompt byte for byte."""

import csv

import pytest

from tunelab.config import ConfigError, load_config
from tunelab.config.data import TaskConfig
from tunelab.data import DataError, build_task

MC_TEMPLATE = "{{ question }}\nA. {{ choices[0] }}\nB. {{ choices[1] }}\nAnswer:"
SHOT = {"question": "1+1?", "A": "3", "B": "2", "answer": "B", "topic": "math"}
QUESTION = {"question": "2+2?", "A": "4", "B": "5", "answer": "A", "topic": "math"}


def _mc(**kw):
    base = {"name": "q", "kind": "multiple_choice", "chat_template": False, "fields": {"choices": ["A", "B"]},
            "template": MC_TEMPLATE, "few_shot": 1, "ratios": {"validation": 0},
            "splits": {"train": {"records": [SHOT]}, "test": {"records": [QUESTION]}}}
    return TaskConfig.model_validate({**base, **kw})


def test_target_delimiter_ends_the_prompt_at_the_user_text(tokenizer):
    ex = build_task(_mc(target_delimiter=" "), tokenizer).splits["test"][0]
    assert ex.prompt_text == "1+1?\nA. 3\nB. 2\nAnswer: B\n\n2+2?\nA. 4\nB. 5\nAnswer:"
    assert ex.choices == [" A", " B"] and ex.target_text == " A" and ex.references == ["A"]
    assert ex.prompt_ids == tokenizer(ex.prompt_text, add_special_tokens=False)["input_ids"]
    assert ex.target_ids == tokenizer(" A", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ex = build_task(_mc(target_delimiter=" ", few_shot_delimiter="\n###\n"), tokenizer).splits["test"][0]
    assert ex.prompt_text == "1+1?\nA. 3\nB. 2\nAnswer: B\n###\n2+2?\nA. 4\nB. 5\nAnswer:"


def test_without_target_delimiter_the_plain_format_is_unchanged(tokenizer):
    ex = build_task(_mc(), tokenizer).splits["test"][0]
    assert ex.prompt_text == "1+1?\nA. 3\nB. 2\nAnswer:\nB\n\n2+2?\nA. 4\nB. 5\nAnswer:\n"
    assert ex.choices == ["A", "B"] and ex.target_text == "A"
    ex = build_task(_mc(system_prompt="About {{ record.topic }}."), tokenizer).splits["test"][0]
    assert ex.prompt_text.startswith("About math.\n\n1+1?\n")
    # plain text stays byte for byte (not even Jinja's newline normalisation)
    ex = build_task(_mc(system_prompt="Line one\r\nline two"), tokenizer).splits["test"][0]
    assert ex.prompt_text.startswith("Line one\r\nline two\n\n1+1?")


def test_system_prompt_is_a_sandboxed_template_written_as_is_in_the_lm_eval_layout(tokenizer):
    task = _mc(target_delimiter=" ", system_prompt="Questions about {{ record.topic | upper }}.\n\n")
    ex = build_task(task, tokenizer).splits["test"][0]
    assert ex.prompt_text == "Questions about MATH.\n\n1+1?\nA. 3\nB. 2\nAnswer: B\n\n2+2?\nA. 4\nB. 5\nAnswer:"
    with pytest.raises(DataError, match="system_prompt"):
        build_task(_mc(system_prompt="{{ record.__class__.__mro__ }}"), tokenizer)


def test_target_delimiter_starts_generated_answers_too(tokenizer):
    task = TaskConfig.model_validate({
        "name": "qa", "kind": "qa", "chat_template": False, "template": "Q: {{ question }}\nA:",
        "target_delimiter": " ", "ratios": {"train": 0, "validation": 0, "test": 1},
        "source": {"records": [{"question": "Capital of France?", "answer": "Paris"}]}})
    ex = build_task(task, tokenizer).splits["test"][0]
    assert (ex.prompt_text, ex.target_text, ex.references) == ("Q: Capital of France?\nA:", " Paris", ["Paris"])


def test_several_sources_per_split_carry_their_constant_fields(tokenizer):
    def src(topic, n):
        return {"records": [{"question": f"{topic} q{i}", "A": "x", "B": "y", "answer": "A"} for i in range(n)],
                "add_fields": {"topic": topic}}

    task = _mc(template="[{{ record.topic }}] {{ question }}", few_shot=0,
               splits={"train": [src("math", 2), src("art", 3)], "test": [src("math", 1), src("art", 2)]})
    data = build_task(task, tokenizer, leak_check="report")  # the test questions repeat training ones
    assert [ex.prompt_text for ex in data.splits["test"]] == [
        "[math] math q0\n", "[art] art q0\n", "[art] art q1\n"]
    assert len(data.splits["train"]) == 5 and data.counts["read"] == 8
    # add_fields replace a column of the same name; the config's inline records are left as they were
    records = [{"question": "q", "A": "x", "B": "y", "answer": "A", "topic": "old"}]
    task = _mc(template="{{ record.topic }}", few_shot=0, ratios={"train": 0, "validation": 0, "test": 1},
               splits=None, source=[{"records": records, "add_fields": {"topic": "new"}}])
    assert build_task(task, tokenizer).splits["test"][0].prompt_text == "new\n"
    assert records[0]["topic"] == "old"


def test_a_list_is_sources_only_when_every_item_names_an_origin():
    one = TaskConfig.model_validate({"name": "c", "kind": "qa", "source": [{"question": "q", "answer": "a"}]})
    assert one.source.records == [{"question": "q", "answer": "a"}]
    many = TaskConfig.model_validate({"name": "c", "kind": "qa", "source": ["a.jsonl", {"path": "b.csv"}],
                                      "splits": None})
    assert [s.path for s in many.source] == ["a.jsonl", "b.csv"]
    with pytest.raises(ConfigError, match="did you mean 'columns'"):
        load_config(data={"data": {"tasks": [{"name": "c", "kind": "qa", "source": [{"path": "a", "colums": []}]}]}})


def _grouped(sampler: str, k: int = 2):
    train = [{"question": f"{g}{i}", "A": "x", "B": "y", "answer": "AB"[i % 2], "g": g}
             for i in range(4) for g in ("p", "q")]  # p0 q0 p1 q1 p2 q2 p3 q3
    test = [{"question": "p-test", "A": "x", "B": "y", "answer": "A", "g": "p"},
            {"question": "q-test", "A": "x", "B": "y", "answer": "A", "g": "q"}]
    return _mc(template="{{ question }}", target_delimiter=" ", few_shot=k, few_shot_group="g",
               few_shot_sampler=sampler, splits={"train": {"records": train}, "test": {"records": test}})


def test_first_sampler_takes_the_groups_first_examples_in_source_order(tokenizer):
    data = build_task(_grouped("first"), tokenizer, seed=3)
    assert [ex.prompt_text for ex in data.splits["test"]] == ["p0 A\n\np1 B\n\np-test", "q0 A\n\nq1 B\n\nq-test"]
    # a training example is never its own shot: the next one in source order takes its place
    train = {ex.user_text: ex.prompt_text for ex in data.splits["train"]}
    assert train["p0"] == "p1 B\n\np2 A\n\np0" and train["p2"] == "p0 A\n\np1 B\n\np2"


def test_random_sampler_draws_from_the_same_group_only(tokenizer):
    data = build_task(_grouped("random", k=3), tokenizer, seed=3)
    for ex in data.splits["test"] + data.splits["train"]:
        group = ex.user_text[0]
        shots = [block.split(" ")[0] for block in ex.prompt_text.split("\n\n")[:-1]]
        assert len(shots) == 3 and len(set(shots)) == 3 and ex.user_text not in shots
        assert all(s.startswith(group) for s in shots)
    with pytest.raises(DataError, match="few_shot_group field 'subject' is missing"):
        build_task(_grouped("random").model_copy(update={"few_shot_group": "subject"}), tokenizer)


def test_label_synonyms_reach_task_data_and_are_validated(tokenizer):
    records = [{"text": "rockets", "label": 3}, {"text": "stocks", "label": 2}]
    task = {"name": "ag", "kind": "classification", "labels": {2: "Business", 3: "Sci/Tech"},
            "label_synonyms": {"Sci/Tech": ["Science and Technology", "science"], "Business": "finance"},
            "source": {"records": records}}
    data = build_task(TaskConfig.model_validate(task), tokenizer)
    assert data.label_synonyms == {"Business": ["finance"], "Sci/Tech": ["Science and Technology", "science"]}
    assert build_task(TaskConfig.model_validate({**task, "label_synonyms": None}), tokenizer).label_synonyms == {
        "Business": [], "Sci/Tech": []}
    with pytest.raises(ConfigError, match="unknown label.*'Sports'"):
        load_config(data={"data": {"tasks": [{**task, "label_synonyms": {"Sports": ["x"]}}]}})
    with pytest.raises(ConfigError, match="'Money!' stands for both 'Business' and 'Sci/Tech'"):
        load_config(data={"data": {"tasks": [{**task, "label_synonyms": {"Business": ["money"],
                                                                          "Sci/Tech": ["Money!"]}}]}})
    with pytest.raises(ConfigError, match="applies to kind classification only"):
        load_config(data={"data": {"tasks": [{"name": "q", "kind": "qa", "source": "x.jsonl",
                                              "label_synonyms": {"a": ["b"]}}]}})
    # labels taken from the data are checked when the task is built
    with pytest.raises(DataError, match="unknown label"):
        build_task(TaskConfig.model_validate({**task, "labels": None, "label_synonyms": {"Sports": ["x"]}}), tokenizer)


def _mmlu_block(row) -> str:
    return f"{row[0].strip()}\nA. {row[1]}\nB. {row[2]}\nC. {row[3]}\nD. {row[4]}\nAnswer:"


def test_lm_eval_mmlu_style_is_lm_evals_prompt_byte_for_byte(shared_data, tokenizer):
    from tunelab.evaluate.recipes import data_task_config, expand_task

    root = shared_data / "mmlu_subset"
    spec = expand_task(f"mmlu={root},subjects=abstract_algebra+high_school_government_and_politics,"
                       "style=lm_eval,few_shot=2")
    data = build_task(data_task_config(spec), tokenizer)
    assert len(data.splits["test"]) == 100 + 193 and len(data.splits["train"]) == 10
    first = {}
    for subject, title in (("abstract_algebra", "abstract algebra"),
                           ("high_school_government_and_politics", "high school government and politics")):
        dev = list(csv.reader(open(root / "dev" / f"{subject}_dev.csv", newline="", encoding="utf-8")))
        test = list(csv.reader(open(root / "test" / f"{subject}_test.csv", newline="", encoding="utf-8")))
        shots = "".join(f"{_mmlu_block(r)} {r[5].strip()}\n\n" for r in dev[:2])
        first[subject] = (f"The following are multiple choice questions (with answers) about {title}.\n\n"
                          f"{shots}{_mmlu_block(test[0])}")
    examples = {ex.source.rsplit("/", 1)[1].split(":")[0]: ex for ex in reversed(data.splits["test"])}
    for subject, expected in first.items():
        ex = examples[f"{subject}_test.csv"]
        assert ex.prompt_text == expected
        assert ex.choices == [" A", " B", " C", " D"] and ex.target_text == ex.choices[ex.answer_index]
