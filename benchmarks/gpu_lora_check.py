"""One short LoRA SFT and batched generation on CUDA in bf16 through tunelab: tokens/s, MFU, memory.

    python benchmarks/gpu_lora_check.py                 # on a GPU machine (about a minute)
    python benchmarks/gpu_lora_check.py --tiny --steps 3  # CPU dry check of the same code path

Self-contained: a SmolLM2-135M-shaped Llama (random weights unless --model names a folder, hub id or
the alias smollm2-135m-instruct) and synthetic examples of mixed lengths with completion-only
labels, so it needs neither ../shared/data nor the hub. Throughput does not depend on the weights.
MFU: model FLOPs (benchmarks/machine.py) over the bf16 matmul peak measured on the same device first.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import Shapes, Work, inference_flops, matmul_peak, training_flops  # noqa: E402


@dataclass
class Task:
    splits: dict
    kind: str = "instruction"
    labels: list[str] | None = None


@dataclass
class Prepared:
    tasks: dict
    report: dict = field(default_factory=dict)

    def train_epoch(self, epoch: int, seed: int):
        items = list(self.tasks["synthetic"].splits["train"])
        random.Random(seed * 1000 + epoch).shuffle(items)
        return items


def synthetic(n: int, vocab: int, max_len: int, seed: int = 0, split: str = "train") -> list:
    """Random token examples of mixed lengths (tunelab.data.Example), the answer a third or less."""
    from tunelab.data.example import Example

    rng = random.Random(seed)
    out = []
    for i in range(n):
        total = rng.randint(max_len // 8, max_len)
        answer = rng.randint(4, max(5, total // 3))
        ids = [rng.randrange(100, vocab) for _ in range(total)]
        prompt, target = ids[:total - answer], ids[total - answer:]
        out.append(Example(task="synthetic", split=split, source_index=i, prompt_text="", target_text="",
                           prompt_ids=prompt, target_ids=target, input_ids=ids,
                           label_ids=[-100] * len(prompt) + target, references=[""],
                           content_key=f"{seed}-{i}"))
    return out


def build_model_folder(folder: Path, tiny: bool) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2) if tiny else \
        dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
             num_key_value_heads=3)
    config = LlamaConfig(vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, **shape)
    LlamaForCausalLM(config).save_pretrained(folder)
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2},
                                                                               unk_token="<unk>")),
                                  bos_token="<s>", eos_token="</s>", pad_token="</s>", unk_token="<unk>")
    tok.save_pretrained(folder)
    return str(folder)


def generation_check(model_name: str, run: Path, args, cuda: bool, peak: float) -> dict:
    """Greedy batched generation (tunelab's engine) with the trained adapter: new tokens/s and MFU."""
    import torch

    from tunelab.config.evaluate import GenerationConfig
    from tunelab.evaluate.generation import generate
    from tunelab.models import load_model

    model, tokenizer = load_model(model_name, adapter=str(run), dtype="bfloat16", device="cuda" if cuda else "cpu")
    prompts = [e.prompt_ids[-args.max_length // 2:] for e in synthetic(args.batch_size * 2, 49152, args.max_length, 2)]
    settings = GenerationConfig(max_new_tokens=args.new_tokens)
    generate(model, tokenizer, prompts[:2], GenerationConfig(max_new_tokens=2), batch_size=2)  # warm-up
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, settings, batch_size=args.batch_size)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    work = Work()
    for p, o in zip(prompts, outputs):
        work.add_sequence(len(p) + len(o.token_ids), len(o.token_ids))
    new = sum(len(o.token_ids) for o in outputs)
    return {"generated_tokens_per_s": new / seconds,
            "generation_mfu": inference_flops(Shapes.of(model.config), work) / seconds / peak}


def main() -> None:
    import torch

    from tunelab.config import load_config
    from tunelab.train import train

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder, hub id or alias (default: random SmolLM2-135M shape)")
    p.add_argument("--tiny", action="store_true", help="a 2-layer model: a quick CPU check of the code path")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--packing", action="store_true")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens generated per prompt")
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args()

    cuda = torch.cuda.is_available()
    peak = matmul_peak("bfloat16", device="cuda" if cuda else "cpu", tokens=8192 if cuda else 2048)
    print(f"device: {torch.cuda.get_device_name(0) if cuda else 'CPU (dry check)'}; torch {torch.__version__}; "
          f"bf16 matmul peak {peak / 1e12:.2f} TFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model_folder(Path(tmp) / "model", args.tiny)
        data = Prepared({"synthetic": Task({"train": synthetic(args.batch_size * args.steps, 49152, args.max_length),
                                            "validation": synthetic(32, 49152, args.max_length, 1, "validation")})})
        cfg = load_config(data={
            "name": "gpu-check", "output_dir": str(Path(tmp) / "runs"), "model": {"name": model},
            "train": {"method": "lora", "lr": 2e-4, "max_steps": args.steps, "batch_size": args.batch_size,
                      "precision": "bf16", "progress": "plain", "packing": args.packing, "keep_best": False,
                      "lora": {"r": 16, "alpha": 32}},
        })
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        run = train(cfg, data=data)
        wall = time.perf_counter() - t0
        steps = [json.loads(line) for line in open(run / "metrics.jsonl") if '"loss"' in line]
        summary = json.loads((run / "summary.json").read_text())
        generation = generation_check(model, run, args, cuda, peak)
        from transformers import AutoConfig

        shapes = Shapes.of(AutoConfig.from_pretrained(model))
    later = steps[1:] or steps  # step 1 includes CUDA warm-up
    seconds = later[-1]["elapsed_s"] - (steps[0]["elapsed_s"] if len(steps) > 1 else 0)
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "steps": len(steps), "batch_size": args.batch_size, "max_length": args.max_length,
        "real_tokens_per_s": sum(s["real_tokens"] for s in later) / seconds,
        "padding_fraction": sum(s["padding_tokens"] for s in later)
        / max(1, sum(s["padding_tokens"] + s["real_tokens"] for s in later)),
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "peak_rss_mb": summary["peak_rss_mb"], "first_loss": steps[0]["loss"], "last_loss": steps[-1]["loss"],
        "wall_s": wall, "bf16_matmul_peak_tflops": peak / 1e12, **generation,
    }
    work = Work()
    for e in data.tasks["synthetic"].splits["train"]:
        work.add_sequence(len(e.input_ids), sum(1 for t in e.label_ids if t != -100))
    result["train_mfu"] = result["real_tokens_per_s"] * training_flops(shapes, work) / work.tokens / peak
    for k, v in result.items():
        print(f"{k:>20}: {v:.3f}" if isinstance(v, float) else f"{k:>20}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
