"""Preference examples as training items and micro-batches (train/preference.py computes the loss).

A pair is one item: its chosen and rejected rows go in the same micro-batch, all chosen rows
first, then all rejected rows in the same order, so one forward computes both (TRL's layout).
A kto example is one item; its micro-batch also gets the mismatched rows of the KL estimate:
prompt i with the answer of item i−1 (TRL's rotation by one, within the micro-batch; the plan
never gives a kto micro-batch one example alone: train/batching.py plan_steps(min_part=2)).

Shared prompt (`shared_prompt=True`, what training uses where the model's probe allows it:
train/probes.py): a pair is ONE row, prompt + chosen + rejected, and `segments` holds the three
lengths; train/preference.py builds from them an attention mask under which the rejected answer
sees the prompt but not the chosen answer, and position ids that restart the rejected answer
where the prompt ends. Each answer is then computed exactly as after the prompt alone, and the
prompt once instead of twice: on LLaMA-Factory's pairs (SmolLM2 tokens, batch 4, length-grouped)
the positions a forward computes fall by 30% at max_length 256 and 24% at 512 (fewer prompt
tokens and less padding: two answers of one pair no longer pad to the longer one). But a row is
longer, and attention grows with the square of a row (the masked blocks are computed too): on a
small model with long pairs that costs more than the positions save (SmolLM2-135M at max_length
512: one row was 0.94-1.23x the time of two). So each micro-batch takes whichever layout costs
less by `layout_cost`: positions times the linear layers' work, plus row length squared times
attention's (`attention_weight`, from the model's shapes: train/preference.py).

The plan (train/batching.py `plan_steps`) groups items by length as for SFT. A Batch's
`label_tokens` is its number of items: the step divides the summed losses by it, so the loss is
a mean over pairs (kto: examples), as in TRL.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.train.batching import IGNORE, Batch


@dataclass
class PreferenceItem:
    prompt_ids: list[int]
    chosen_ids: list[int]  # the chosen answer (kto: the answer)
    rejected_ids: list[int] | None = None  # pairs
    desirable: bool | None = None  # kto
    # full fine-tuning: the example whose stored reference log-probs the batch carries (read when
    # collated: they are computed after the first plan, train/setup.py)
    reference_of: object | None = None

    @property
    def length(self) -> int:
        """Tokens the item costs in a forward (its rows, without padding)."""
        n = len(self.prompt_ids) + len(self.chosen_ids)
        return n + (len(self.prompt_ids) + len(self.rejected_ids) if self.rejected_ids is not None else 0)


def preference_items(examples, objective: str, stored_reference: bool = False) -> list[PreferenceItem]:
    """Items of an epoch's examples; `stored_reference`: with the reference log-probs each example
    holds (train/preference.py `store_reference_logps`), for runs without an adapter to disable."""
    out = []
    for ex in examples:
        rejected, desirable = getattr(ex, "rejected_ids", None), getattr(ex, "desirable", None)
        if objective == "kto" and desirable is None:
            raise ValueError(f"{ex.source}: objective kto needs examples of kind kto (an answer and a label)")
        if objective != "kto" and rejected is None:
            raise ValueError(f"{ex.source}: objective {objective} needs pairs (task kind preference)")
        out.append(PreferenceItem(list(ex.prompt_ids), list(ex.target_ids), rejected and list(rejected), desirable,
                                  ex if stored_reference else None))
    return out


def _rows(rows: list[tuple[list[int], list[int]]], pad_id: int):
    """(input_ids, labels, attention_mask) of (prompt, answer) rows, right-padded; labels on the answer."""
    import torch

    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (p, a) in enumerate(rows):
        n = len(p) + len(a)
        ids[r, :n] = torch.tensor(p + a)
        labels[r, len(p):n] = torch.tensor(a)
        mask[r, :n] = 1
    return ids, labels, mask


def _shared_rows(items: list[PreferenceItem], pad_id: int) -> dict:
    """One right-padded row per pair (prompt, chosen, rejected) and its three lengths."""
    import torch

    width = max(len(it.prompt_ids) + len(it.chosen_ids) + len(it.rejected_ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    for r, it in enumerate(items):
        row = it.prompt_ids + it.chosen_ids + it.rejected_ids
        ids[r, :len(row)] = torch.tensor(row)
    segments = torch.tensor([[len(it.prompt_ids), len(it.chosen_ids), len(it.rejected_ids)] for it in items])
    return {"input_ids": ids, "segments": segments, "n_pairs": torch.tensor(len(items))}


def layout_cost(rows: int, width: int, attention_weight: float) -> float:
    """Relative cost of a forward over `rows` padded rows of `width` positions: the linear layers'
    work grows with the positions, attention's with each row's length squared."""
    return rows * width * (1.0 + attention_weight * width)


def one_row_pays(items: list[PreferenceItem], attention_weight: float) -> bool:
    """Whether one row per pair costs less than two (an empty prompt has no last position to
    predict both answers' first tokens from: two rows)."""
    if not all(it.prompt_ids for it in items):
        return False
    one = max(len(it.prompt_ids) + len(it.chosen_ids) + len(it.rejected_ids) for it in items)
    two = max(len(it.prompt_ids) + max(len(it.chosen_ids), len(it.rejected_ids)) for it in items)
    return layout_cost(len(items), one, attention_weight) < layout_cost(2 * len(items), two, attention_weight)


def collate_preference(items: list[PreferenceItem], pad_id: int, shared_prompt: bool = False,
                       attention_weight: float = 0.0, layout: str | None = None) -> Batch:
    """A micro-batch of pairs (two rows each, or one where `shared_prompt` allows it and it costs
    less; `layout` "one" or "two" chooses instead) or of kto examples."""
    import torch

    if not items:
        raise ValueError("collate_preference() needs at least one item")
    if layout is None:
        layout = "one" if shared_prompt and one_row_pays(items, attention_weight) else "two"
    if items[0].rejected_ids is not None and layout == "one":
        tensors = _shared_rows(items, pad_id)
        # real tokens: the pair's two sequences, as with two rows (tokens/s stays comparable, with
        # TRL's too); padded: those plus the pad positions the row computes
        real = sum(it.length for it in items)
        computed = sum(len(it.prompt_ids) + len(it.chosen_ids) + len(it.rejected_ids) for it in items)
        _add_stored_reference(tensors, items, "one")
        return Batch(tensors, real, real + tensors["input_ids"].numel() - computed, len(items), len(items))
    if items[0].rejected_ids is not None:
        rows = [(it.prompt_ids, it.chosen_ids) for it in items] + [(it.prompt_ids, it.rejected_ids) for it in items]
        ids, labels, mask = _rows(rows, pad_id)
        tensors = {"input_ids": ids, "labels": labels, "attention_mask": mask, "n_pairs": torch.tensor(len(items))}
        _add_stored_reference(tensors, items, "two")
    else:
        ids, labels, mask = _rows([(it.prompt_ids, it.chosen_ids) for it in items], pad_id)
        kl_rows = [(it.prompt_ids, items[i - 1].chosen_ids) for i, it in enumerate(items)]
        kl_ids, kl_labels, kl_mask = _rows(kl_rows, pad_id)
        tensors = {"input_ids": ids, "labels": labels, "attention_mask": mask,
                   "desirable": torch.tensor([bool(it.desirable) for it in items]),
                   "kl_input_ids": kl_ids, "kl_labels": kl_labels, "kl_attention_mask": kl_mask}
    # every row the forwards compute (kto's KL rows too): real tokens, and all positions with padding
    real = sum(int(t.sum()) for k, t in tensors.items() if k.endswith("attention_mask"))
    padded = sum(int(t.numel()) for k, t in tensors.items() if k.endswith("input_ids"))
    return Batch(tensors, real, padded, len(items), len(items))


def _add_stored_reference(tensors: dict, items: list[PreferenceItem], layout: str) -> None:
    """Full fine-tuning: the stored reference log-probs of the micro-batch's layout, in the order
    the logps come out: every chosen answer, then every rejected one."""
    import torch

    if items[0].reference_of is None:
        return
    refs = [(it.reference_of.reference_logps or {}).get(layout) for it in items]
    if any(r is None for r in refs):
        raise ValueError(f"a pair has no stored reference log-probs in layout {layout!r} "
                         "(train/preference.py store_reference_logps)")
    tensors["ref_logps"] = torch.tensor([r[0] for r in refs] + [r[1] for r in refs], dtype=torch.float32)
