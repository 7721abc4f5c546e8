"""Two-stage continual runs on the tiny model, with and without replay: the matrix and BWT."""

import json
import sys
from pathlib import Path

import pytest

from tunelab.config import ConfigError, load_config
from tunelab.experiments import run_continual
from tunelab.experiments.matrix import matrix_summary


def _stages(raw, replay=None, method="lora"):
    raw["stages"] = [{"name": "sent", "tasks": ["sentiment"]}, {"name": "col", "tasks": ["colour"]}]
    raw["continual"] = {"eval_limit": 6, "max_new_tokens": 4}
    if replay:
        raw["continual"]["replay"] = replay
    return load_config(data=raw)


def _check_matrix(root):
    out = json.loads((root / "matrix.json").read_text())
    assert out["stages"] == ["base", "01-sent", "02-col"]
    assert out["tasks"] == ["sentiment", "colour"]
    assert out["learned_at"] == {"sentiment": 1, "colour": 2}
    for key in ("loss", "score"):
        m = out["matrices"][key]
        assert len(m["scores"]) == 3 and all(len(r) == 2 for r in m["scores"])
        # the summary is the GEM formula applied to the stored numbers
        expect = matrix_summary(m["scores"], m["tasks"], m["learned_at"], m["higher_is_better"])
        assert m["summary"]["BWT"] == pytest.approx(expect["BWT"])
        r = m["scores"]
        sign = 1 if m["higher_is_better"] else -1
        assert m["summary"]["BWT"] == pytest.approx(sign * (r[2][0] - r[1][0]))
        assert m["summary"]["FWT"] == pytest.approx(sign * (r[1][1] - r[0][1]))
        # BWT's one term as a paired test (the comparison engine): stage 2's model vs stage 1's on
        # sentiment's examples, the same difference as the matrix holds, with its CI and p
        test = m["backward_tests"]["sentiment"]
        assert (test["stage_learned"], test["stage_last"]) == (1, 2) and test["n"] == 6
        assert test["diff"] == pytest.approx(r[2][0] - r[1][0], abs=1e-9)
        assert test["ci"][0] <= test["diff"] <= test["ci"][1] and 0 < test["p_value"] <= 1 and "test" in test
        assert "colour" not in m["backward_tests"]  # learned at the last stage: nothing after it
    loss = out["matrices"]["loss"]["scores"]
    # training stage 1 on sentiment lowers its loss (lr 5e-3 on a random tiny model)
    assert loss[1][0] < loss[0][0]
    assert (root / "matrix.png").stat().st_size > 1000 and "BWT" in (root / "matrix.md").read_text()
    return out


def test_two_stages_without_and_with_replay(two_tasks):
    plain = run_continual(_stages(two_tasks()))
    out_plain = _check_matrix(plain)
    stage2 = plain / "stages" / "02-col"
    events = [json.loads(line) for line in (stage2 / "metrics.jsonl").read_text().splitlines()]
    data_event = next(e for e in events if e.get("event") == "data")
    assert data_event["counts"]["replay"] == {}
    # the earlier task's validation loss is logged while stage 2 trains (forgetting as it happens)
    assert any("val_loss/sentiment" in e for e in events)
    assert not (stage2 / "checkpoints").exists() and (stage2 / "final" / "adapter_config.json").exists()

    raw = two_tasks()
    raw["name"] = "cl-replay"
    replay = run_continual(_stages(raw, replay={"count": 5}))
    out_replay = _check_matrix(replay)
    events = [json.loads(line) for line in (replay / "stages" / "02-col" / "metrics.jsonl").read_text().splitlines()]
    counts = next(e for e in events if e.get("event") == "data")["counts"]
    assert counts["replay"] == {"sentiment": 5}
    # the same base and the same stage 1 (same seed): only stage 2 differs
    assert out_replay["matrices"]["loss"]["scores"][:2] == out_plain["matrices"]["loss"]["scores"][:2]
    assert out_replay["matrices"]["loss"]["scores"][2] != out_plain["matrices"]["loss"]["scores"][2]
    _check_report(replay, out_replay)


def _check_report(root, out):
    """`tunelab report` on a continual root: the heatmap and the matrix tables, rendered in Chromium."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
    from browser_check import render_and_check

    from tunelab.report import write_report

    html_path, md_path = write_report(root)
    (root / "browser").mkdir()
    text = render_and_check(html_path, root / "browser", ["Task x stage matrix"], {"plot-matrix"})
    loss = out["matrices"]["loss"]
    table = text.split('id="matrix-loss"')[1].split("</table>")[0]
    assert f"{loss['scores'][2][0]:.4f}" in table and table.count("<tr>") == 4  # header + base + 2 stages
    assert f"BWT {loss['summary']['BWT']:+.4f}" in text
    md = md_path.read_text()
    assert "## Task x stage matrix" in md and "report_files/matrix.png" in md


def test_full_method_and_resume_skips_finished_stages(two_tasks):
    cfg = _stages(two_tasks(method="full", steps=2))
    root = run_continual(cfg)
    assert (root / "stages" / "01-sent" / "final" / "config.json").exists()
    first = (root / "matrix.json").read_text()
    # each row scores the model trained up to that stage, not the one before it
    loss = json.loads(first)["matrices"]["loss"]["scores"]
    assert loss[1] != loss[0] and loss[2] != loss[1]
    with pytest.raises(ConfigError, match="--resume"):
        run_continual(cfg)

    def no_training(*a, **k):
        raise AssertionError("a finished stage was trained again")

    run_continual(cfg, resume=True, train_fn=no_training)
    assert (root / "matrix.json").read_text() == first


def test_unknown_stage_task_is_a_clear_error(two_tasks):
    raw = two_tasks()
    raw["stages"] = [{"tasks": ["sentimnet"]}]
    with pytest.raises(ConfigError, match="stages.0.tasks: unknown task 'sentimnet'"):
        run_continual(load_config(data=raw))
