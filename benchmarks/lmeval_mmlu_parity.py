"""Parity with lm-evaluation-harness on MMLU: the same prompts, letters and log-likelihoods.

Runs, on the same CSVs (../shared/data/mmlu_subset), zero-shot (or --shots N), float32, no chat template:
  lm-eval:  its HF backend on a local copy of its own MMLU task (the template and per-subject
            description are read from the installed lm_eval package; only the dataset is local:
            `dataset_path: csv`, and a process_docs that gives the CSV rows cais/mmlu's shape)
  tunelab:  tunelab.evaluate.evaluate(model, [mmlu recipe, style=lm_eval, all subjects in one task])
and compares per question: the prompt (byte for byte), the continuations (" A".." D"), the
predicted letter, and each option's log-likelihood (|Δ| <= --tol). Exits 1 on any difference.

    python benchmarks/lmeval_mmlu_parity.py [--subjects a+b] [--batch-size 16] [--shots N] [--json OUT]

Needs `pip install "lm_eval[hf]>=0.4,<0.5"` (in the `test` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mmlu_subset"
MODEL = "smollm2-135m-instruct"
COLUMNS = ["question", "A", "B", "C", "D", "answer"]
# CSV rows -> cais/mmlu's schema (choices list, answer index), so lm-eval's own template applies.
PROCESS_DOCS = '''
def process_docs(dataset):
    # The letter column is renamed first: mapped onto itself, datasets would keep its string type
    # ("0"), and lm-eval's own accuracy would then compare "0" with 0.
    dataset = dataset.rename_column("answer", "letter")
    return dataset.map(lambda d: {"choices": [d["A"], d["B"], d["C"], d["D"]],
                                  "answer": "ABCD".index(d["letter"].strip())},
                       remove_columns=["A", "B", "C", "D", "letter"])
'''


def subjects_in(data: Path) -> list[str]:
    return sorted(f.name[: -len("_test.csv")] for f in (data / "test").glob("*_test.csv"))


def write_lm_eval_tasks(folder: Path, data: Path, subjects: list[str], prefix: str = "tunelab_parity_mmlu_") -> list[str]:
    """One lm-eval task per subject, named prefix + subject: lm-eval's MMLU template and the
    subject's description over the local CSVs (also the tests' local lm-eval task)."""
    import yaml
    from lm_eval import tasks as lm_tasks

    mmlu_dir = Path(lm_tasks.__file__).parent / "mmlu" / "default"
    template = yaml.safe_load((mmlu_dir / "_default_template_yaml").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tunelab_parity_utils.py").write_text(PROCESS_DOCS)
    names = []
    for subject in subjects:
        own = yaml.safe_load((mmlu_dir / f"mmlu_{subject}.yaml").read_text())
        cfg = {**template, "task": f"{prefix}{subject}", "description": own["description"],
               "dataset_path": "csv",
               "dataset_kwargs": {"data_files": {"test": str(data / "test" / f"{subject}_test.csv"),
                                                 "dev": str(data / "dev" / f"{subject}_dev.csv")},
                                  "column_names": COLUMNS, "keep_default_na": False, "na_filter": False}}
        text = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
        (folder / f"tunelab_parity_mmlu_{subject}.yaml").write_text(
            text + "process_docs: !function tunelab_parity_utils.process_docs\n")
        names.append(cfg["task"])
    return names


def run_lm_eval(model_dir: str, data: Path, subjects: list[str], batch_size: int, shots: int = 0) -> dict[str, list[dict]]:
    """subject -> [{prompt, continuations, logprobs}] in file order."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        names = write_lm_eval_tasks(Path(tmp), data, subjects)
        lm = HFLM(pretrained=model_dir, dtype="float32", batch_size=batch_size, device="cpu")
        out = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=shots, log_samples=True,
                                      apply_chat_template=False, task_manager=TaskManager(include_path=tmp),
                                      bootstrap_iters=0)
    found = {}
    for subject, name in zip(subjects, names):
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        found[subject] = [{"prompt": s["arguments"][0][0], "continuations": [a[1] for a in s["arguments"]],
                           "logprobs": [float(r[0]) for r in s["filtered_resps"]]} for s in samples]
    return found


def run_tunelab(data: Path, subjects: list[str], batch_size: int, output: Path, shots: int = 0) -> dict[str, list[dict]]:
    """subject -> [{prompt, continuations, logprobs}] in file order, from one multi-subject task."""
    from tunelab.evaluate import evaluate
    from tunelab.evaluate.harness import read_examples

    task = {"recipe": "mmlu", "path": str(data), "subjects": "+".join(subjects), "style": "lm_eval",
            "name": "mmlu_lm_eval", "few_shot": shots}
    evaluate(MODEL, [task], output_dir=output, batch_size=batch_size, dtype="float32", cache=False,
             n_resamples=100)
    found: dict[str, list[dict]] = {s: [] for s in subjects}
    for row in read_examples(output, "mmlu_lm_eval"):
        subject = Path(row["source"].rsplit(":", 1)[0]).name[: -len("_test.csv")]
        found[subject].append({"prompt": row["prompt"], "continuations": row["choices"],
                               "logprobs": row["logprobs"], "prediction": row["prediction"]})
    return found


def compare(lm: dict[str, list[dict]], tl: dict[str, list[dict]], tol: float) -> dict:
    """Per subject: questions, identical prompts, identical letters, max |Δ log-likelihood|."""
    report = {"tolerance": tol, "subjects": {}, "differences": []}
    for subject in lm:
        a, b = lm[subject], tl[subject]
        if len(a) != len(b):
            raise SystemExit(f"{subject}: lm-eval has {len(a)} questions, tunelab {len(b)}")
        same_prompt = same_letter = within = 0
        max_diff = 0.0
        for i, (x, y) in enumerate(zip(a, b)):
            letter_x = "ABCD"[max(range(4), key=x["logprobs"].__getitem__)]
            letter_y = "ABCD"[max(range(4), key=y["logprobs"].__getitem__)]
            diff = max(abs(p - q) for p, q in zip(x["logprobs"], y["logprobs"]))
            prompt_ok = x["prompt"] == y["prompt"] and x["continuations"] == y["continuations"]
            same_prompt += prompt_ok
            same_letter += letter_x == letter_y == y["prediction"].strip()
            within += diff <= tol
            max_diff = max(max_diff, diff)
            if not prompt_ok or letter_x != letter_y or diff > tol:
                report["differences"].append({"subject": subject, "index": i, "prompt_identical": prompt_ok,
                                              "lm_eval": letter_x, "tunelab": letter_y, "max_abs_diff": diff})
        report["subjects"][subject] = {"questions": len(a), "identical_prompts": same_prompt,
                                       "identical_predictions": same_letter, "logprobs_within_tol": within,
                                       "max_abs_diff": max_diff}
    rows = report["subjects"].values()
    report["total"] = {k: sum(r[k] for r in rows) for k in
                       ("questions", "identical_prompts", "identical_predictions", "logprobs_within_tol")}
    report["total"]["max_abs_diff"] = max((r["max_abs_diff"] for r in rows), default=0.0)
    report["identical"] = not report["differences"]
    return report


class Stopwatch:
    """Adds the time spent in one function (patched in place on its owner) to `seconds`."""

    def __init__(self, owner, name: str):
        self.owner, self.name, self.original, self.seconds = owner, name, getattr(owner, name), 0.0

    def __enter__(self):
        original = self.original

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.original)


def run_parity(subjects: list[str] | None = None, data: Path = DATA, batch_size: int = 16,
               tol: float = 1e-4, shots: int = 0) -> dict:
    """compare()'s report plus wall seconds of each whole command and of its scoring calls alone
    (lm-eval: HFLM.loglikelihood; tunelab: the engine's score_shared_context)."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    import tunelab.evaluate.engine as engine
    from tunelab.models import resolve_model

    subjects = subjects or subjects_in(data)
    model_dir = str(resolve_model(MODEL))
    t0 = time.perf_counter()
    with Stopwatch(HFLM, "loglikelihood") as lm_scoring:
        lm = run_lm_eval(model_dir, data, subjects, batch_size, shots)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, Stopwatch(engine, "score_shared_context") as tl_scoring:
        tl = run_tunelab(data, subjects, batch_size, Path(tmp), shots)
    t2 = time.perf_counter()
    report = compare(lm, tl, tol)
    report["seconds"] = {"lm_eval": round(t1 - t0, 1), "tunelab": round(t2 - t1, 1)}
    report["scoring_seconds"] = {"lm_eval": round(lm_scoring.seconds, 2), "tunelab": round(tl_scoring.seconds, 2)}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)  # the contexts' lengths, for model FLOPs
    report["context_tokens"] = [len(tokenizer(q["prompt"], add_special_tokens=False)["input_ids"])
                                for subject in subjects for q in tl[subject]]
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", help="a+b+c (default: every subject in --data/test)")
    ap.add_argument("--data", default=str(DATA), help="MMLU CSV folder with dev/ and test/")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shots", type=int, default=0, help="few-shot examples (lm-eval: the subject's first N dev rows)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max |Δ log-likelihood| per option")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    subjects = [s for s in (args.subjects or "").replace("+", " ").split() if s] or None
    report = run_parity(subjects, Path(args.data), args.batch_size, args.tol, args.shots)
    print(f"{'subject':40} {'questions':>9} {'prompts =':>9} {'letters =':>9} {'max |Δ ll|':>11}")
    for subject, r in {**report["subjects"], "total": report["total"]}.items():
        print(f"{subject:40} {r['questions']:>9} {r['identical_prompts']:>9} {r['identical_predictions']:>9} "
              f"{r['max_abs_diff']:>11.2e}")
    print(f"wall: lm-eval {report['seconds']['lm_eval']} s, tunelab {report['seconds']['tunelab']} s; "
          f"scoring calls alone: lm-eval {report['scoring_seconds']['lm_eval']} s, "
          f"tunelab {report['scoring_seconds']['tunelab']} s")
    for d in report["differences"][:20]:
        print("difference:", json.dumps(d))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
