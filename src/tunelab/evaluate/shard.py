"""Data-parallel evaluation: each process scores a share of the batches; the rows are gathered.

Under `accelerate launch --num_processes N ... -m tunelab.cli eval` every process loads its own
copy of the model, scores every N-th batch and the outputs are gathered back into example order
on every process, so metrics and confidence intervals are computed from the whole list exactly
as in one process. With one process every function here is a no-op.

Why batches and not examples: log-likelihoods are not bit-for-bit batch-invariant (a batch's
padded width and `logits_to_keep` change float rounding in the last bits, and multiple choice
plans its shared-prefix runs over all questions), so sharding examples would make a rank's
batches differ from one process's. Each scorer plans its batches over all the items as one
process would, then keeps only this process's (`mine`): every batch is computed exactly as one
process computes it, so the results are identical, example for example. Batches are taken
strided, not in contiguous blocks: plans put the longest first, so striding balances the work.

All processes must agree on what to compute, so the result cache has one owner: the main process
reads it, hands its entries to the others (`from_main`) and alone writes it.

Data parallelism is opt-in (a `World` passed down from `tunelab eval`), never inferred from an
initialised process group: continual experiments score on the main process while the others
wait, and a collective there would hang; training validation has every process score the same
examples (under FSDP each forward needs every process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    """This process's place among the processes sharing one evaluation."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


ONE = World()


def launched_world() -> World:
    """The processes of `accelerate launch` / `torchrun` (WORLD_SIZE > 1), else one process.

    The process group is set up as the training loop sets it up (gloo on CPU, NCCL with GPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ONE
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size())


def mine(batches: list, world: World = ONE, progress=None, items=len) -> list:
    """This process's batches of a plan made over every item: every world.size-th from its rank.
    A BatchProgress is told how many items (items(batch) each) that is: its lines count this
    process's share."""
    if world.size == 1:
        return batches
    picked = batches[world.rank::world.size]
    if progress is not None and hasattr(progress, "total"):
        progress.total = sum(items(b) for b in picked)
    return picked


def gather(found: dict, world: World = ONE) -> dict:
    """Every process's {item index: output} merged, on every process (pickled over the process group)."""
    if world.size == 1:
        return found
    import torch

    parts: list = [None] * world.size
    torch.distributed.all_gather_object(parts, found)
    return {i: out for part in parts for i, out in part.items()}


def from_main(obj, world: World = ONE):
    """The main process's `obj` on every process (what the others pass is ignored)."""
    if world.size == 1:
        return obj
    import torch

    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def total_work(counts: dict, world: World = ONE) -> dict:
    """A WorkCounter's numbers (asdict) summed over the processes: the work the whole evaluation did."""
    if world.size == 1:
        return counts
    parts = gather({world.rank: counts}, world).values()
    return {name: sum(part[name] for part in parts)
            if isinstance(value, (int, float)) and not isinstance(value, bool) else value
            for name, value in counts.items()}
