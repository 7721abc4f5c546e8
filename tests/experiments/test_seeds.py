"""Training seeds on the tiny model: one real run folder per seed, seeds.json, resume that keeps
finished seeds, one-line errors for bad `seeds:` values, and a study whose systems run per seed."""

import json

import pytest
import yaml

from tunelab.cli.main import main
from tunelab.config import ConfigError, load_config
from tunelab.experiments.seeds import seed_config, train_seeds
from tunelab.train import train


def losses(run):
    return [e["loss"] for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in e]


def events(run):
    return [e.get("event") for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def test_each_seed_is_a_run_and_resume_keeps_the_finished_ones(two_tasks):
    raw = dict(two_tasks(steps=4), name="sys", seeds=[0])
    raw["train"] = dict(raw["train"], eval_every=1)
    root = train_seeds(load_config(data=raw), log=lambda m: None)
    first = root / "seed-0"
    kept = (first / "metrics.jsonl").stat().st_mtime_ns
    # A second seed is added and its run stopped after its first step (with a checkpoint), as an
    # interrupted run would be; --resume keeps seed 0 and continues seed 1 from its checkpoint.
    both = load_config(data=dict(raw, seeds=[0, 1]))
    train(seed_config(both, 1, root), on_validation=lambda step, results: True)
    assert json.loads((root / "seed-1" / "summary.json").read_text())["status"] == "stopped"
    with pytest.raises(ConfigError, match="already holds seed runs .*pass --resume"):
        train_seeds(both, log=lambda m: None)
    logs = []
    assert train_seeds(both, resume=True, log=logs.append) == root
    assert logs == [f"seed 1/2: {first}: done earlier, kept", f"seed 2/2: {root / 'seed-1'}"]
    assert (first / "metrics.jsonl").stat().st_mtime_ns == kept  # not trained again
    assert "resumed" in events(root / "seed-1") and "resumed" not in events(first)
    assert json.loads((root / "seeds.json").read_text()) == {"seeds": [0, 1], "runs": ["seed-0", "seed-1"]}
    for seed in (0, 1):
        run = root / f"seed-{seed}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["steps"] == 4 and (run / "final").exists()
        assert json.loads((run / "env.json").read_text())["seed"] == seed
        assert yaml.safe_load((run / "config.resolved.yaml").read_text())["seed"] == raw["seed"]  # same split
    # Another training seed: another initialisation and data order, so other losses.
    assert len(losses(first)) == len(losses(root / "seed-1")) == 4 and losses(first) != losses(root / "seed-1")
    assert yaml.safe_load((root / "config.resolved.yaml").read_text())["seeds"] == [0, 1]


@pytest.mark.parametrize("seeds, message", [
    ([], "seeds: give at least one seed"),
    ([0, 2, 0], "seeds: each seed once: [0, 2, 0] lists a seed twice"),
    (["one"], "seeds.0: Input should be a valid integer"),
    ([1.5], "seeds.0: Input should be a valid integer"),
    ([-1], "seeds.0: Input should be greater than or equal to 0"),
    (3, "seeds: Input should be a valid list"),
])
def test_bad_seeds_are_one_clear_line(two_tasks, tmp_path, capsys, seeds, message):
    with pytest.raises(ConfigError, match="^<config>: " + message.replace("[", r"\[").replace("]", r"\]")):
        load_config(data=dict(two_tasks(), seeds=seeds))
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(dict(two_tasks(), seeds=seeds)))
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tunelab: error: {config}: {message}") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_seeds_refuse_what_they_cannot_mean(two_tasks):
    raw = dict(two_tasks(), seeds=[0, 1])
    with pytest.raises(ConfigError, match="seeds: each seed's run sets train.seed itself; remove train.seed"):
        load_config(data=dict(raw, train=dict(raw["train"], seed=7)))
    search = {"space": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
    with pytest.raises(ConfigError, match="seeds: a search's trials are single runs"):
        load_config(data=dict(raw, search=search))


def scored(two_tasks, **kw):
    """Tuned on sentiment, colour held out; both scored before and after training."""
    raw = dict(two_tasks(), **kw)
    sentiment, colour = raw["data"]["tasks"]
    raw["data"] = dict(raw["data"], tasks=[sentiment])
    raw["forgetting"] = {"tasks": ["sentiment", {**colour, "ratios": {"train": 0, "validation": 0, "test": 1}}],
                         "limit": 8, "bootstrap_resamples": 50, "generation": {"max_new_tokens": 3}}
    return raw


def test_train_with_seeds_compares_the_system_over_its_seeds(two_tasks, tmp_path, capsys):
    config = tmp_path / "seeds.yaml"
    config.write_text(yaml.safe_dump(scored(two_tasks, name="lora3", seeds=[0, 1])))
    assert main(["train", str(config)]) == 0
    out, err = capsys.readouterr()
    root = tmp_path / "runs" / "lora3"
    assert out.strip() == str(root)
    assert f"seed 1/2: {root / 'seed-0'}" in err and f"seed 2/2: {root / 'seed-1'}" in err
    # Every seed scored on the same examples; the base model's scores are the same for both.
    base = [json.loads((root / f"seed-{s}" / "forgetting" / "base" / "results.json").read_text()) for s in (0, 1)]
    assert base[0]["tasks"]["sentiment"]["metrics"] == base[1]["tasks"]["sentiment"]["metrics"]
    table = json.loads((root / "compare.json").read_text())
    assert len(table["runs"]) == 2 and table["tuned_task"] == "sentiment"  # the base model, the system
    gain = next(r for r in table["rows"] if r["task"] == "sentiment" and r["primary"])["tests"][1]
    assert len(gain["per_seed_diffs"]) == 2 and "holds_in_every_seed" in gain
    assert (root / "compare.md").exists() and (root / "report.html").exists()


def test_study_with_seeds_trains_each_system_per_seed(two_tasks):
    from tunelab.experiments.study import run_study

    raw = scored(two_tasks, name="tradeoff", seeds=[0, 1])
    raw["study"] = {"methods": {"lora": [1e-3], "full": [1e-3]}}
    root = run_study(load_config(data=raw), log=lambda m: None)
    for system in ("lora-lr0.001", "full-lr0.001"):
        folder = root / "runs" / system
        assert json.loads((folder / "seeds.json").read_text()) == {"seeds": [0, 1], "runs": ["seed-0", "seed-1"]}
        for seed in (0, 1):
            assert (folder / f"seed-{seed}" / "forgetting" / "forgetting.json").exists()
            assert json.loads((folder / f"seed-{seed}" / "env.json").read_text())["seed"] == seed
    table = json.loads((root / "compare.json").read_text())
    assert len(table["runs"]) == 3  # the base model and two systems, each over two seeds
    for row in (r for r in table["rows"] if r["primary"]):
        assert [len(t["per_seed_diffs"]) for t in row["tests"][1:]] == [2, 2]
    assert [p["system"] for p in table["trade_off"]] == table["runs"][1:]


def test_stages_over_seeds_write_the_matrices_over_them(two_tasks, tmp_path, capsys):
    """`stages:` with `seeds:`: the whole continual experiment once per training seed, then every
    cell's mean and SD, BWT per seed, and the seed-aware paired test of what stage 2 cost stage 1."""
    raw = dict(two_tasks(steps=3), seeds=[0, 1])
    raw["stages"] = [{"name": "sent", "tasks": ["sentiment"]}, {"name": "col", "tasks": ["colour"]}]
    raw["continual"] = {"eval_limit": 6, "max_new_tokens": 4, "metrics": ["loss"]}
    config = tmp_path / "cl.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", str(config)]) == 0
    root = tmp_path / "runs" / "cl"
    assert capsys.readouterr().out.strip() == str(root)
    assert json.loads((root / "seeds.json").read_text()) == {"seeds": [0, 1], "runs": ["seed-0", "seed-1"]}
    own = [json.loads((root / f"seed-{s}" / "matrix.json").read_text())["matrices"]["loss"] for s in (0, 1)]
    assert own[0]["scores"][1] != own[1]["scores"][1]  # two trainings
    over = json.loads((root / "matrix_over_seeds.json").read_text())["matrices"]["loss"]
    assert over["mean"][2][0] == pytest.approx((own[0]["scores"][2][0] + own[1]["scores"][2][0]) / 2)
    assert over["summary"]["BWT"]["per_seed"] == [m["summary"]["BWT"] for m in own]
    test = over["backward_tests"]["sentiment"]
    assert test["test"].startswith("seeds") and test["n_seeds"] == [2, 2] and test["n"] == 6
    assert test["per_seed_diffs"] == pytest.approx([m["scores"][2][0] - m["scores"][1][0] for m in own])
    assert (test["ci"][0] > 0 or test["ci"][1] < 0) == (test["p_value"] < 0.05)
    assert "BWT" in (root / "matrix_over_seeds.md").read_text()
    from tunelab.report import write_report

    html, md = write_report(root)  # the report reads the matrices over seeds
    text = md.read_text()
    assert "mean over training seeds 0, 1" in text and "BWT per seed" in text
    assert f"{test['diff']:+.4f} [{test['ci'][0]:+.4f}, {test['ci'][1]:+.4f}]" in text and "seeds" in html.read_text()
