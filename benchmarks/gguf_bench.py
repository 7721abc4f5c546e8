"""Does llama.cpp run tunelab's GGUF export like transformers runs the model? Greedy text, 10 prompts.

    python benchmarks/gguf_bench.py [--steps 10] [--lr 2e-4] [--gguf-type f16] [--max-new-tokens 40] [--json OUT]
    python benchmarks/gguf_bench.py --build   # first: build llama-cpp-python from its sdist (timed)

1. A short LoRA run on the embedded SmolLM2-135M-Instruct (`tunelab demo`'s sentiment and QA
   data, offline), exported with `tunelab export RUN --gguf` (llama.cpp's own converter).
2. Ten chat prompts (sentiment, QA, open-ended), rendered with the model's chat template.
   llama.cpp (llama-cpp-python) tokenizes the prompt text itself with the tokenizer inside the
   GGUF, then decodes greedily (top-k 1, no repetition penalty) and detokenizes; transformers
   decodes greedily from its own tokenization, (a) on the merged float32 model and (b) on the
   GGUF file de-quantized by transformers' loader. (a) includes the rounding to the file's type,
   (b) only the difference between the two runtimes.
3. Prints, per prompt: prompt tokens equal?, text equal to (a)?, to (b)?, and the first token
   where they part; then the matches out of 10.

--build times `pip install --no-binary llama-cpp-python llama-cpp-python==<the converter's version>`:
the same sdist tunelab takes the converter from, so converter and runtime are one llama.cpp.

Measured 2026-12-02 on the shared 2-core CPU (llama-cpp-python 0.3.36, transformers 5.24):
- build from the sdist (`pip wheel`, CMAKE_BUILD_PARALLEL_LEVEL=2, machine shared with other
  jobs): 28.6 min wall, 11.9 min CPU.
- f16 (258 MB), 10 LoRA steps at lr 2e-4, 40 new tokens: prompt tokens equal 10/10, llama.cpp's
  detokenized text equal to transformers' decoding 10/10, greedy text equal to transformers on
  the merged float32 model 10/10 and on the de-quantized GGUF 10/10 (228 generated tokens).
  With lr 1e-3 (one-word answers, 23 tokens): 10/10.
- q8_0 (138 MB): 5/10 against either; the other five part from the merged model at tokens 0,
  1, 2, 3 and 27.
  llama.cpp's q8_0 matrix products also quantize the activations to 8 bits (ggml's q8_0 x q8_0
  dot product), which transformers' de-quantized float32 path does not, so near-tied greedy
  choices can flip: q8_0 is close, not identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
PROMPTS = [
    "Review: Flat, predictable and far too long.\nIs this review positive or negative?",
    "Review: A witty, warm comedy that doesn't overstay its welcome.\nIs this review positive or negative?",
    "Review: My pasta arrived swimming in oil.\nIs this review positive or negative?",
    "What is the capital of Thailand?",
    "Which element has the chemical symbol O?",
    "Write a haiku about the sea.",
    "Explain in two sentences why the sky is blue.",
    "List three fruits that are red.",
    "Translate 'good morning' into French.",
    "What is 12 times 7?",
]


def build(version: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-binary", "llama-cpp-python",
                    f"llama-cpp-python=={version}"], check=True, env={**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL":
                                                                   str(os.cpu_count() or 1)})
    return time.perf_counter() - start


def lora_run(folder: Path, steps: int, lr: float) -> Path:
    from tunelab.config import load_config
    from tunelab.experiments.demo import qa_task, sentiment_task
    from tunelab.train import train

    tasks = [sentiment_task(), qa_task()]  # `tunelab demo`'s built-in data: nothing downloaded
    cfg = {"name": "gguf-bench", "seed": 0, "output_dir": str(folder), "model": {"name": "smollm2-135m-instruct"},
           "data": {"max_length": 128, "tasks": tasks},
           "train": {"method": "lora", "lr": lr, "max_steps": steps, "batch_size": 8, "precision": "fp32",
                     "progress": "off", "eval_every": None}}
    return train(load_config(data=cfg))


def greedy_transformers(model, tokenizer, prompt: str, n: int) -> tuple[list[int], list[int]]:
    import torch

    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    return ids[0].tolist(), new[:-1] if new and new[-1] == tokenizer.eos_token_id else new  # as llama.cpp: no EOS


def greedy_llama_cpp(llm, prompt: str, n: int) -> tuple[list[int], list[int]]:
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    out = []
    for token in llm.generate(tokens, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        if token == llm.token_eos():
            break
        out.append(token)
        if len(out) == n:
            break
    return tokens, out


def first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


def compare(gguf: Path, merged, gguf_model, tokenizer, n: int) -> list[dict]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=os.cpu_count() or 1, seed=0, verbose=False)
    rows = []
    for text in PROMPTS:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                               add_generation_prompt=True)
        hf_ids, hf_out = greedy_transformers(merged, tokenizer, prompt, n)
        _, hf_gguf_out = greedy_transformers(gguf_model, tokenizer, prompt, n)
        ll_ids, ll_out = greedy_llama_cpp(llm, prompt, n)
        ll_text = llm.detokenize(ll_out).decode("utf-8", errors="replace")
        rows.append({"prompt": text, "prompt_tokens_equal": hf_ids == ll_ids,
                     "llama_cpp": ll_text, "transformers": tokenizer.decode(hf_out),
                     "detokenized_equal": ll_text == tokenizer.decode(ll_out),
                     "match_merged": ll_out == hf_out and ll_text == tokenizer.decode(hf_out),
                     "match_gguf": ll_out == hf_gguf_out,
                     "first_difference_merged": first_difference(ll_out, hf_out),
                     "first_difference_gguf": first_difference(ll_out, hf_gguf_out), "tokens": len(ll_out)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", action="store_true", help="build llama-cpp-python from its sdist (timed)")
    parser.add_argument("--steps", type=int, default=10)
    # 2e-4: the adapter changes the weights (the export must carry it) while the model still writes
    # sentences, so greedy decoding runs the full --max-new-tokens; 1e-3 gives one-word answers.
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--gguf-type", default="f16", choices=["f16", "bf16", "q8_0"])
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    from tunelab.export.gguf import LLAMA_CPP_PYTHON

    if args.build:
        print(f"llama-cpp-python {LLAMA_CPP_PYTHON} built from its sdist in {build(LLAMA_CPP_PYTHON):.0f} s")
        return 0
    import torch
    from transformers import AutoModelForCausalLM

    from tunelab.export import export_run, load_run_model
    from tunelab.models.tuners import merge_into_base

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = lora_run(Path(tmp), args.steps, args.lr)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        out = export_run(run, gguf=args.gguf_type)
        export_s = time.perf_counter() - start
        gguf = next(out.glob("*.gguf"))
        model, tokenizer, _ = load_run_model(run)
        merged = merge_into_base(model).eval()
        gguf_model = AutoModelForCausalLM.from_pretrained(out, gguf_file=gguf.name, dtype=torch.float32).eval()
        rows = compare(gguf, merged, gguf_model, tokenizer, args.max_new_tokens)
        size_mb = gguf.stat().st_size / 2**20
    for r in rows:
        print(f"{'=' if r['match_merged'] else 'x'}{'=' if r['match_gguf'] else 'x'} "
              f"prompt ids equal: {r['prompt_tokens_equal']!s:5} | {r['prompt'][:48]!r:52} -> {r['llama_cpp'][:60]!r}"
              + ("" if r["match_merged"] else f"  (transformers: {r['transformers'][:60]!r}, "
                                              f"parts at token {r['first_difference_merged']})"))
    summary = {"gguf_type": args.gguf_type, "gguf_mb": round(size_mb, 1), "train_s": round(train_s, 1),
               "export_s": round(export_s, 1), "steps": args.steps, "lr": args.lr,
               "max_new_tokens": args.max_new_tokens,
               "prompt_tokens_equal": sum(r["prompt_tokens_equal"] for r in rows),
               "detokenized_equal": sum(r["detokenized_equal"] for r in rows),
               "matches_merged_float32": sum(r["match_merged"] for r in rows),
               "matches_gguf_in_transformers": sum(r["match_gguf"] for r in rows), "prompts": len(rows),
               "generated_tokens": sum(r["tokens"] for r in rows)}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
