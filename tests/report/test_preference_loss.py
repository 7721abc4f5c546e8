"""The loss curves of a preference run: a tiny Llama DPO-trained a few steps with validation each
step. Its training loss is the DPO objective (~0.69 at the start), its val_loss the chosen answers'
SFT cross-entropy (several nats): two quantities, drawn in two panels each labelled with what it
is, read back from Chromium against metrics.jsonl. An SFT run keeps its one axis."""

from __future__ import annotations

import json

import pytest
from browser_check import dump_dom, probe_result
from page_check import assert_points_drawn, drawn_span, read_page

from tunelab.report import write_report

# Each loss panel's text as the page shows it (titles, axis labels; tick labels included).
TEXT_PROBE = """<script>
window.addEventListener('load', () => {
  const out = {};
  for (const a of document.querySelectorAll('g[id^="axes/loss/"]')) out[a.id] = a.textContent;
  const pre = document.createElement('pre');
  pre.id = 'loss-text';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""
GOOD = "good great lovely fine superb charming".split()
BAD = "bad awful terrible boring dull weak".split()


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)  # shared 2-core machine: extra threads only spin


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory, tiny_model_dir):
    """A LoRA DPO run of 4 steps with val_loss at the start and after every step."""
    from tunelab.config import load_config
    from tunelab.train import train

    root = tmp_path_factory.mktemp("dpo-report")
    prefs = root / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"Review number {i}: how was the film?",
                                         "chosen": f"It was {GOOD[i % 6]}" + " indeed" * (i % 3),
                                         "rejected": f"It was {BAD[(i * 5) % 6]}"}) + "\n" for i in range(30)))
    cfg = {"name": "dpo", "seed": 3, "output_dir": str(root / "runs"), "model": {"name": tiny_model_dir},
           "data": {"max_length": 64, "cache": False, "split": {"train": 0.6, "validation": 0.4, "test": 0.0},
                    "tasks": [{"name": "prefs", "kind": "preference", "source": str(prefs)}]},
           "train": {"method": "lora", "objective": "dpo", "lr": 1e-2, "scheduler": "constant", "max_steps": 4,
                     "batch_size": 2, "precision": "fp32", "progress": "off", "lora": {"r": 4},
                     "eval_every": 1, "eval_at_start": True, "preference": {"beta": 0.5, "dpo_loss": "hinge"}}}
    return train(load_config(data=cfg))


def events(run) -> tuple[list, list]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [(e["step"], e["loss"]) for e in rows if e.get("loss") is not None and e.get("split") is None]
    val = [(e["step"], e["val_loss"]) for e in rows if e.get("val_loss") is not None]
    return train, val


def test_a_dpo_run_draws_its_objective_and_val_loss_apart(dpo_run, tmp_path):
    train, val = events(dpo_run)
    assert len(train) == 4 and len(val) == 5  # the start, then every step
    # the two quantities the old single axis mixed: the objective and an SFT cross-entropy
    assert max(loss for _, loss in train) < 1.5 < min(loss for _, loss in val)
    html_path, md_path = write_report(dpo_run)
    page = read_page(html_path, tmp_path)
    # the validation points, each at its step and val_loss, in the validation panel
    assert page["marks"]["curve/loss/validation"]["axes"] == "axes/loss/validation"
    assert_points_drawn(page, "curve/loss/validation", [s for s, _ in val], [v for _, v in val])
    # the training curve, in its own panel, spans exactly the logged losses and steps
    assert page["marks"]["curve/loss/train"]["axes"] == "axes/loss/train"
    lo, hi, tol = drawn_span(page, "curve/loss/train", vertical=True)
    losses = [loss for _, loss in train]
    assert abs(lo - min(losses)) <= tol and abs(hi - max(losses)) <= tol, (lo, hi, losses)
    lo, hi, tol = drawn_span(page, "curve/loss/train")
    assert abs(lo - train[0][0]) <= tol and abs(hi - train[-1][0]) <= tol
    assert "axes/loss/loss" not in page["axes"]  # no shared axis

    text = probe_result(dump_dom(html_path, tmp_path, TEXT_PROBE, "loss-text.html"), "loss-text")
    assert "training: DPO loss (hinge), mean per pair" in text["axes/loss/train"]
    assert "dpo loss" in text["axes/loss/train"]
    assert "val_loss, the chosen answers' cross-entropy per completion token" in text["axes/loss/validation"]
    assert "not the dpo objective" in text["axes/loss/validation"]
    assert "completion tokens" not in text["axes/loss/train"]
    html, md = html_path.read_text(), md_path.read_text()
    assert "id='loss-note'" in html and "train.objective dpo: the training loss is the dpo objective" in md


def test_an_sft_run_keeps_one_axis(synthetic_run, tmp_path):
    """No config (an SFT run as before) and an explicit objective sft draw the same single axis."""
    train, val = events(synthetic_run)
    for config in (None, "train: {objective: sft, method: lora}\n"):
        if config:
            (synthetic_run / "config.resolved.yaml").write_text(config)
        html_path, md_path = write_report(synthetic_run)
        page = read_page(html_path, tmp_path)
        assert {a for a in page["axes"] if a.startswith("axes/loss/")} == {"axes/loss/loss"}
        assert page["marks"]["curve/loss/validation"]["axes"] == "axes/loss/loss"
        assert_points_drawn(page, "curve/loss/validation", [s for s, _ in val], [v for _, v in val])
        text = probe_result(dump_dom(html_path, tmp_path, TEXT_PROBE, "loss-text.html"), "loss-text")
        assert "loss (completion tokens)" in text["axes/loss/loss"]
        assert "id='loss-note'" not in html_path.read_text() and "train.objective" not in md_path.read_text()


@pytest.mark.parametrize("objective, train_title, val_title", [
    ("kto", "training: KTO loss, mean per answer", "the answers' (desirable or not) cross-entropy"),
    ("orpo", "training: ORPO loss (chosen answer's NLL + odds-ratio term), mean per pair",
     "the chosen answers' cross-entropy"),
    ("simpo", "training: SimPO loss, mean per pair", "not the simpo objective"),
])
def test_each_objective_names_its_loss(objective, train_title, val_title):
    from tunelab.report.plots import loss_curves

    fig = loss_curves([{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6},
                       {"step": 2, "split": "validation", "val_loss": 1.8}], objective)
    titles = {ax.get_gid(): ax.get_title(loc="left") for ax in fig.axes}
    assert set(titles) == {"axes/loss/train", "axes/loss/validation"}
    assert titles["axes/loss/train"] == train_title
    assert val_title in titles["axes/loss/validation"]
