"""A signal during `tunelab export` leaves no partial export folder; the rerun writes the whole one.

The export runs as its own process through slow_phase.py, which announces each `check()` between
export steps as `slow: export` and waits there: the test sends SIGTERM while the weights are
written (into the hidden `.export-adapter.partial` folder) and the model card is not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.train import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import toy_config  # noqa: E402

SLOW = str(Path(__file__).with_name("slow_phase.py"))


def test_sigterm_during_export_leaves_no_partial_folder_and_a_rerun_succeeds(tmp_path, tiny_model_dir, capsys):
    run = train(load_config(data=toy_config(tmp_path, tiny_model_dir, n=16, max_steps=1)))
    out, partial = run / "export-adapter", run / ".export-adapter.partial"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "TUNELAB_HOME": str(tmp_path / "home")}
    env.pop("TUNELAB_DEBUG", None)
    proc = subprocess.Popen([sys.executable, SLOW, "export", "export", str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines, deadline = [], time.monotonic() + 60
    for line in proc.stderr:
        lines.append(line)
        if line.strip() == "slow: export":
            break
        assert time.monotonic() < deadline, "".join(lines)
    else:
        raise AssertionError(f"export never reached its first check:\n{''.join(lines)}")
    assert (partial / "adapter_model.safetensors").exists() and not out.exists()  # mid-export: staged only
    proc.send_signal(signal.SIGTERM)
    stdout, rest = proc.communicate(timeout=30)
    stderr = "".join(lines) + rest
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr
    assert [x for x in stderr.splitlines() if x.strip()][-1] == "tunelab: terminated during export", stderr
    assert stdout == "" and not out.exists() and not partial.exists()

    partial.mkdir()  # what a kill -9 would leave: the next export replaces it
    (partial / "junk.bin").write_bytes(b"x")
    capsys.readouterr()
    assert main(["export", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert not (out / "junk.bin").exists() and not partial.exists()
