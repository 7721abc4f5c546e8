"""Defaults that decide how many examples a number rests on are visible: results.json records n of
n_available, the limit in force (and whether it is a default) and the split rule; the commands
print them; docs/evaluation.md lists every eval:/forgetting: key with its true default."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from tunelab.cli.main import main
from tunelab.config.evaluate import EvalConfig, ForgettingConfig, GenerationConfig, LmEvalConfig

DOCS = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"
SECTIONS = {"eval": EvalConfig, "forgetting": ForgettingConfig, "generation": GenerationConfig,
            "lm_eval": LmEvalConfig}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_records(path: Path, n: int) -> Path:
    """n distinct prompt/completion records (distinct, so the leak check removes none)."""
    lines = [json.dumps({"prompt": f"Review {i}: film number {i} was seen. The sentiment is\n",
                         "completion": "positive" if i % 2 else "negative"}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def heldout_task(path: Path) -> dict:
    """A held-out file given as the task's own test split: scored whole, up to the limit."""
    return {"name": "heldout", "kind": "completion", "splits": {"test": str(path)}, "eval_kind": "perplexity"}


def training_config(model_dir: str, shared_data: Path, forgetting: dict):
    from tunelab.config import load_config

    return load_config(data={
        "name": "visible", "model": {"name": model_dir},
        "data": {"tasks": [{"name": "sst2", "kind": "classification",
                            "source": f"{shared_data}/sst2/sst2_glue_validation.tsv",
                            "fields": {"text": "sentence", "label": "label"},
                            "labels": {0: "negative", 1: "positive"}}]},
        "forgetting": {"bootstrap_resamples": 50, **forgetting}})


def docs_table() -> dict[str, str]:
    """key -> default cell of the reference table in docs/evaluation.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Reference: every `eval:` and `forgetting:` key", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("key", "---"):
            continue
        for key in re.findall(r"`([a-z_]+\.[a-z_]+)`", cells[0]):
            rows[key] = cells[1]
    return rows


def test_docs_reference_lists_every_key_with_its_default():
    rows = docs_table()
    expected = {f"{prefix}.{name}": field for prefix, model in SECTIONS.items()
                for name, field in model.model_fields.items()}
    assert sorted(set(expected) - set(rows)) == []  # every schema key is documented
    assert sorted(set(rows) - set(expected)) == []  # and no row names a key that is gone
    for key, field in expected.items():
        default = field.default_factory() if field.default_factory is not None else field.default
        if isinstance(default, BaseModel):  # a nested section: its own keys have rows
            continue
        assert yaml.safe_load(rows[key].strip("`")) == default, key


def test_forgetting_default_limit_cuts_a_heldout_file_and_says_so(peaked_model_dir, shared_data, tmp_path, home):
    from tunelab.evaluate import forgetting_during_training
    from tunelab.evaluate.harness import evaluate, limit_origin

    held = heldout_task(write_records(tmp_path / "heldout.jsonl", 64))
    cfg = training_config(peaked_model_dir, shared_data, {"tasks": [held]})
    assert cfg.forgetting.limit == 50 and "limit" not in cfg.forgetting.model_fields_set
    res = forgetting_during_training(cfg, tmp_path / "run", "before")["tasks"]["heldout"]
    assert (res["n"], res["n_available"], res["limit"]["value"]) == (50, 64, 50)
    assert res["split_rule"] == {"split": "test", "rule": "given"}
    assert len(res["metrics"]["token_nll"]["ci"]) == 2 and res["metrics"]["token_nll"]["n"] == 50
    # the section's default named as such, as the training hook records it (limit_from)
    section = ForgettingConfig()
    out = evaluate(peaked_model_dir, [held], limit=section.limit, limit_from=limit_origin("forgetting.limit", section),
                   n_resamples=50, output_dir=tmp_path / "eval", verbose=False)
    written = json.loads((tmp_path / "eval" / "results.json").read_text())["tasks"]["heldout"]
    assert written["limit"] == {"value": 50, "from": "forgetting.limit", "default": True}
    assert written["scored"] == ("scored 50 of 64 test examples (the task's own test file): forgetting.limit "
                                 "(default 50); set forgetting.limit: null to score all")
    assert out["tasks"]["heldout"]["metrics"] == written["metrics"]


def test_forgetting_limit_null_scores_every_example(peaked_model_dir, shared_data, tmp_path, home):
    from tunelab.evaluate import forgetting_during_training

    held = heldout_task(write_records(tmp_path / "heldout.jsonl", 64))
    cfg = training_config(peaked_model_dir, shared_data, {"tasks": [held], "limit": None})
    res = forgetting_during_training(cfg, tmp_path / "run", "before")["tasks"]["heldout"]
    assert (res["n"], res["n_available"], res["limit"]) == (64, 64, None)
    assert res["metrics"]["token_nll"]["n"] == 64
    assert res["scored"] == "scored all 64 test examples (the task's own test file)"


def test_cli_prints_n_of_the_split_and_the_split_rule(fake_run, peaked_model_dir, tmp_path, home, capsys):
    # a plain source of 640 records: its seeded 80/10/10 split leaves 64 test examples
    source = write_records(tmp_path / "plain.jsonl", 640)
    task = f"t0={source},name=plain,eval_kind=perplexity"
    rule = "10% of the source by data.split default ratios [0.8, 0.1, 0.1], seed 42"
    out = tmp_path / "forgetting"
    rc = main(["forgetting", "--base", peaked_model_dir, "--tuned", str(fake_run), "--task", task, "--limit", "50",
               "--bootstrap", "50", "--output", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "plain: test split, n=50 of 64" in printed
    assert f"scored 50 of 64 test examples ({rule}): --limit 50; leave out --limit to score all" in printed
    for side in ("base", "tuned"):  # both models on the same examples, and both say so
        res = json.loads((out / side / "results.json").read_text())["tasks"]["plain"]
        assert (res["n"], res["n_available"]) == (50, 64)
        assert res["limit"] == {"value": 50, "from": "--limit", "default": False}
        assert res["split_rule"] == {"split": "test", "rule": "ratios", "of": "source",
                                     "ratios": {"train": 0.8, "validation": 0.1, "test": 0.1},
                                     "ratios_from": "data.split default", "share": 0.1, "seed": 42}
    # eval: no limit by default, so the whole split is scored and no "of" is printed
    rc = main(["eval", "--model", peaked_model_dir, "--task", task, "--bootstrap", "50", "--output",
               str(tmp_path / "eval")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "plain: test split, n=64\n" in printed and f"scored all 64 test examples ({rule})" in printed
    res = json.loads((tmp_path / "eval" / "results.json").read_text())["tasks"]["plain"]
    assert (res["n"], res["n_available"], res["limit"]) == (64, 64, None)
    # eval.limit from a config is named as the key to change
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({"model": {"name": peaked_model_dir},
                                                       "eval": {"tasks": [task], "limit": 40}}))
    rc = main(["eval", "--model", peaked_model_dir, "--config", str(tmp_path / "exp.yaml"), "--bootstrap", "50",
               "--output", str(tmp_path / "eval40")])
    assert rc == 0
    assert "n=40 of 64" in (printed := capsys.readouterr().out)
    assert "eval.limit: 40; set eval.limit: null to score all" in printed
