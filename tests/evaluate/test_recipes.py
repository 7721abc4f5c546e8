"""Task references -> eval specs; the eval:/forgetting: config sections."""

from __future__ import annotations

import pytest

from tunelab.config import ConfigError, load_config
from tunelab.evaluate.recipes import data_task_config, expand_task


def test_recipe_strings_expand_to_data_tasks(shared_data, tokenizer):
    from tunelab.data import build_task

    spec = expand_task(f"mmlu={shared_data}/mmlu_subset,subjects=anatomy,few_shot=1,name=anat")
    assert spec["name"] == "anat" and spec["eval_kind"] == "loglikelihood" and spec["few_shot"] == 1
    assert spec["metrics"] == ["acc", "acc_norm", "acc_bytes"]
    data = build_task(data_task_config(spec), tokenizer)
    assert len(data.splits["test"]) == 135 and data.splits["test"][0].choices[0] == "paralysis of the facial muscles."
    ds = expand_task(f"dialogsum={shared_data}/dialogsum,eval_kind=perplexity")
    assert ds["metrics"] == ["token_nll", "perplexity", "bits_per_byte"]
    t0 = expand_task(f"t0={shared_data}/t0_multitask_mix/xsum_DOC_tldr.jsonl")
    assert t0["name"] == "t0_xsum" and t0["metrics"] == ["rougeL"]
    t0 = expand_task(f"t0={shared_data}/t0_multitask_mix/ag_news_classify_with_choices.jsonl,metrics=exact_match+token_f1")
    assert t0["metrics"] == ["exact_match", "token_f1"] and t0["strip_suffix"] == ["<|endoftext|>"]


def test_bare_names_refer_to_the_configs_data_tasks():
    data_tasks = {"mine": {"name": "mine", "kind": "qa", "source": "x.jsonl"}}
    assert expand_task("mine", data_tasks=data_tasks)["metrics"] == ["exact_match", "token_f1"]
    spec = expand_task({"name": "mine", "max_new_tokens": 5}, data_tasks=data_tasks)
    assert spec["max_new_tokens"] == 5 and spec["kind"] == "qa"
    with pytest.raises(ConfigError, match="not a RECIPE=PATH"):
        expand_task("other", data_tasks=data_tasks)


def test_bad_references_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'dialogsum'"):
        expand_task("dialogsun=x")
    with pytest.raises(ConfigError, match="does not exist"):
        expand_task(f"sst2={tmp_path}/nothing")
    with pytest.raises(ConfigError, match="option 'oops' is not key=value"):
        expand_task(f"sst2={tmp_path},oops")


def test_eval_and_forgetting_sections_validate():
    cfg = load_config(data={"eval": {"tasks": ["sst2=x"], "generation": {"max_new_tokens": 5, "stop": ["\n"]}},
                            "forgetting": {"tasks": ["mmlu=y"], "limit": 10, "tuned_task": "sst2"}})
    assert cfg.eval.generation.max_new_tokens == 5 and cfg.forgetting.limit == 10
    with pytest.raises(ConfigError, match="did you mean 'limit'"):
        load_config(data={"forgetting": {"limmit": 3}})
    with pytest.raises(ConfigError, match="did you mean 'forgetting'"):  # the section's old name
        load_config(data={"retention": {"limit": 3}})
    with pytest.raises(ConfigError, match="max_new_tokens"):
        load_config(data={"eval": {"generation": {"max_new_tokens": 0}}})


def test_mmlu_recipe_several_subjects_same_subject_shots_and_lm_eval_style(shared_data, tokenizer):
    from tunelab.data import build_task

    root = shared_data / "mmlu_subset"
    spec = expand_task(f"mmlu={root},few_shot=1")  # default: every subject, in one task
    data = build_task(data_task_config(spec), tokenizer)
    assert len(data.splits["test"]) == 1073 and len(data.splits["train"]) == 30
    assert spec["few_shot_group"] == "subject" and spec["answer_format"] == "text"
    marketing = next(ex for ex in data.splits["test"] if "marketing_test.csv" in ex.source)
    dev = (root / "dev" / "marketing_dev.csv").read_text(encoding="utf-8")
    shot_question = marketing.prompt_text.split("<|im_start|>user\n")[1].split("\n\n")[1]
    assert shot_question.split("\n")[0] in dev  # the shot is a marketing dev question
    lm = expand_task(f"mmlu={root},subjects=anatomy+marketing,style=lm_eval")
    assert (lm["target_delimiter"], lm["few_shot_sampler"], lm["chat_template"]) == (" ", "first", False)
    assert [s["add_fields"]["subject"] for s in lm["splits"]["test"]] == ["anatomy", "marketing"]
    with pytest.raises(ConfigError, match="no .*<subject>_test.csv for astrology"):
        expand_task(f"mmlu={root},subjects=anatomy+astrology")
    with pytest.raises(ConfigError, match="style 'lmeval' is not one of default, lm_eval"):
        expand_task(f"mmlu={root},style=lmeval")
