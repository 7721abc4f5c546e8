"""Where a benchmark stands against this machine's limit: the CPU, its matmul peak, and model FLOPs.

    python benchmarks/machine.py [--json OUT]     # prints the CPU, its ISA features and the peaks

Every speed benchmark here imports it (as a plain module next to it) to print, in the same run:
  the CPU model and ISA features that decide bf16 speed (AVX-512 BF16, AMX), torch's threads;
  the matmul peak, bf16 and fp32, measured with torch at SmolLM2-135M's MLP shapes (a batch of
    8 x 256 tokens: 2048x576 @ 576x1536 and 2048x1536 @ 1536x576), best of several timed loops;
  model FLOPs of the work done, so `model FLOP/s / peak` is the MFU.

Model FLOPs count what the job needs, not what an implementation happens to compute (the
PaLM-paper convention): every linear layer on every real token (2 FLOPs per weight), causal
attention on every query-key pair (QK^T and AV: 4 x head_dim per pair and head), and the LM head
only where a logit is used (label positions in training, the scored positions in multiple
choice, one per generated token). Training multiplies the forward pass: full fine-tuning x3
(forward, activation gradients, weight gradients), PEFT x2 for the frozen linear layers (no weight
gradients) and x3 for attention (its backward is two matmuls per forward matmul). Padding,
recompute and a head run over prompt positions are not model FLOPs: they lower the MFU, as they
should.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_fp16")
PEAK_SHAPES = ((2048, 576, 1536), (2048, 1536, 576))  # (m, k, n): SmolLM2's MLP at 8 x 256 tokens


def cpu_info() -> dict:
    """CPU model, ISA features that matter for bf16, logical cores, torch threads."""
    import torch

    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("?", "x86_64", ""):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "isa": [f for f in ISA_FLAGS if f in flags], "logical_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def matmul_peak(dtype_name: str, seconds: float = 0.6, rounds: int = 5, device: str = "cpu",
                tokens: int = 2048) -> float:
    """Best FLOP/s of torch.matmul over PEAK_SHAPES (m = `tokens`) in this dtype ("bfloat16" / "float32")."""
    import torch

    dtype = getattr(torch, dtype_name)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = 0.0
    with torch.inference_mode():
        for _, k, n in PEAK_SHAPES:
            a = torch.randn(tokens, k, device=device).to(dtype)
            b = torch.randn(k, n, device=device).to(dtype)
            for _ in range(3):  # warm-up: kernel choice, first-touch allocation
                torch.matmul(a, b)
            sync()
            for _ in range(rounds):
                calls, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds / rounds:
                    torch.matmul(a, b)
                    calls += 1
                sync()
                best = max(best, 2 * tokens * k * n * calls / (time.perf_counter() - t0))
    return best


def machine_report() -> dict:
    """cpu_info() plus the measured bf16 and fp32 matmul peaks (FLOP/s)."""
    return {**cpu_info(), "peak_flops": {"bfloat16": matmul_peak("bfloat16"), "float32": matmul_peak("float32")}}


def describe(machine: dict) -> str:
    peaks = machine["peak_flops"]
    return (f"{machine['cpu']} ({', '.join(machine['isa']) or 'no AVX2'}), {machine['logical_cores']} cores, "
            f"torch {machine['torch']} with {machine['torch_threads']} threads; matmul peak "
            f"bf16 {peaks['bfloat16'] / 1e9:.0f} GFLOP/s, fp32 {peaks['float32'] / 1e9:.0f} GFLOP/s")


@dataclass(frozen=True)
class Shapes:
    """The numbers of a decoder that decide its FLOPs."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, config) -> "Shapes":
        heads = config.num_attention_heads
        return cls(layers=config.num_hidden_layers, hidden=config.hidden_size,
                   intermediate=config.intermediate_size, heads=heads,
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                   head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                   vocab=config.vocab_size)

    @property
    def linear_weights(self) -> int:
        """Weights of the decoder's linear layers (attention projections and a gated MLP)."""
        q_o = 2 * self.hidden * self.heads * self.head_dim
        k_v = 2 * self.hidden * self.kv_heads * self.head_dim
        return self.layers * (q_o + k_v + 3 * self.hidden * self.intermediate)


@dataclass
class Work:
    """The tokens of a job: every token through the layers, query-key pairs, logits that are used."""

    tokens: int = 0
    attention_pairs: int = 0
    head_positions: int = 0

    def add_sequence(self, length: int, head_positions: int) -> None:
        self.tokens += length
        self.attention_pairs += length * (length + 1) // 2  # causal: token t attends to t tokens
        self.head_positions += head_positions

    def add_pair(self, prompt: int, chosen: int, rejected: int) -> None:
        """A preference pair: what scoring both answers after one prompt needs (the prompt once,
        each answer attending to the prompt and to itself); the head on the answers' tokens."""
        self.tokens += prompt + chosen + rejected
        self.attention_pairs += sum(n * prompt + n * (n + 1) // 2 for n in (prompt, chosen, rejected)) - prompt ** 2
        self.head_positions += chosen + rejected


def forward_flops(shapes: Shapes, work: Work) -> tuple[int, int, int]:
    """(linear, attention, head) FLOPs of one forward pass over `work`."""
    linear = 2 * shapes.linear_weights * work.tokens
    attention = 4 * shapes.layers * shapes.heads * shapes.head_dim * work.attention_pairs
    head = 2 * shapes.hidden * shapes.vocab * work.head_positions
    return linear, attention, head


def training_flops(shapes: Shapes, work: Work, method: str = "lora") -> int:
    """Forward + backward model FLOPs: x3 for full fine-tuning; for PEFT frozen linears and head x2."""
    linear, attention, head = forward_flops(shapes, work)
    if method == "full":
        return 3 * (linear + attention + head)
    return 2 * linear + 3 * attention + 2 * head


def inference_flops(shapes: Shapes, work: Work) -> int:
    return sum(forward_flops(shapes, work))


def mfu(flops: float, seconds: float, peak: float) -> dict:
    """{"model_flops_per_s", "mfu"} for `flops` done in `seconds` against `peak` FLOP/s."""
    rate = flops / seconds
    return {"model_flops_per_s": rate, "mfu": rate / peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args()
    report = machine_report()
    print(describe(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
