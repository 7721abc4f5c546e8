"""`tunelab chat` and `tunelab generate` (the evaluation engine's generation loop), and a quiet terminal:
`tunelab train` prints nothing that tunelab did not write."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import toy_config  # noqa: E402

TUNELAB = [str(Path(sys.executable).parent / "tunelab")]
# Every line tunelab itself writes while training starts like one of these.
OWN_LINES = re.compile(r"^(step \d+|tunelab[: ]|\[eval\] |run |  |/|interrupted)")


def env(tmp_path) -> dict:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE"))}
    return {**out, "TUNELAB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}


def test_train_prints_only_tunelab_lines_and_a_closing_summary(tmp_path, tiny_model_dir):
    raw = toy_config(tmp_path, tiny_model_dir, name="quiet", max_steps=4, eval_every=2, progress="plain",
                     method="prefix_tuning")  # prefix tuning: transformers warns about past_key_values
    raw["forgetting"] = {"tasks": ["toy"], "limit": 4, "bootstrap_resamples": 50, "generation": {"max_new_tokens": 2}}
    config = tmp_path / "quiet.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run(TUNELAB + ["train", str(config)], capture_output=True, text=True, env=env(tmp_path),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    foreign = [line for line in lines if not OWN_LINES.match(line)]
    assert not foreign, "lines tunelab did not write:\n" + "\n".join(foreign)
    run = tmp_path / "runs" / "quiet"
    assert done.stdout.strip() == str(run)
    assert f"run {run}: completed, 4 steps in" in done.stderr and "next: tunelab eval --run" in done.stderr
    # --verbose shows the third-party lines again
    verbose = subprocess.run(TUNELAB + ["--verbose", "train", str(config), "name=loud"], capture_output=True,
                             text=True, env=env(tmp_path), timeout=300)
    assert verbose.returncode == 0 and any(not OWN_LINES.match(line) for line in verbose.stderr.splitlines()
                                           if line.strip())


def test_generate_uses_the_evaluation_generation_loop(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.config.evaluate import GenerationConfig
    from tunelab.evaluate.generation import generate

    requests = [{"id": 1, "messages": [{"role": "user", "content": "Name a colour."}]},
                {"id": 2, "prompt": "The capital of France is"},
                {"id": 3, "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Count to three, please."}]}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    done = subprocess.run(TUNELAB + ["generate", tiny_model_dir, "-i", str(tmp_path / "in.jsonl"), "-o",
                                     str(tmp_path / "out.jsonl"), "--max-new-tokens", "6", "--batch-size", "2"],
                          capture_output=True, text=True, env=env(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == [1, 2, 3] and all(r["generated_tokens"] >= 1 for r in out)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompts = [tok(tok.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"] if "messages" in r else tok(r["prompt"])["input_ids"]
               for r in requests]
    expected = generate(model, tok, prompts, GenerationConfig(max_new_tokens=6), batch_size=1)
    assert [r["prediction"] for r in out] == [o.text for o in expected]


def test_chat_streams_answers_and_keeps_the_conversation(tmp_path, tiny_model_dir):
    from tunelab.config.evaluate import GenerationConfig
    from tunelab.evaluate.inference import reply
    from tunelab.evaluate.loading import LazyModel, model_spec

    done = subprocess.run(TUNELAB + ["chat", tiny_model_dir, "--max-new-tokens", "5", "--system", "Be brief."],
                          input="Hello there\nAnd again\n/reset\nHello there\n/exit\n", capture_output=True,
                          text=True, env=env(tmp_path), timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    # The same conversation in this process: the second turn sees the first; /reset forgets both.
    lm, settings = LazyModel(model_spec(tiny_model_dir)), GenerationConfig(max_new_tokens=5)
    system = [{"role": "system", "content": "Be brief."}]
    first = reply(lm, system + [{"role": "user", "content": "Hello there"}], settings)
    second = reply(lm, system + [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": first},
                                 {"role": "user", "content": "And again"}], settings)
    assert done.stdout == f"{first}\n{second}\n{first}\n"
