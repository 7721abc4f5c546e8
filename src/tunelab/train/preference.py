"""Preference objectives as plain functions: DPO (sigmoid, hinge, robust), IPO, SimPO, ORPO, KTO.

Every function takes per-sequence log-probabilities of the scored tokens (the answer and its
end-of-turn token; `completion_logps`) and returns per-item losses and rewards; `PreferenceLoss`
wraps the model so that one call does the forwards of a micro-batch (the policy over chosen and
rejected rows concatenated, the reference with the LoRA adapter disabled, the KTO KL rows) and
returns (sum of the items' losses, metric sums). Sums, as for SFT (train/loss.py): the step
divides by its number of items (pairs, or kto examples), so the loss is the mean over the step's
items whatever the split into micro-batches and processes.

Formulas (β = train.preference.beta; Δ = log-ratio of chosen minus that of rejected,
log-ratio = log πθ(y|x) − log πref(y|x), summed over the answer's tokens):
- dpo sigmoid  −log σ(βΔ)                       (Rafailov et al. 2023, eq. 7)
- dpo hinge    max(0, 1 − βΔ)                   (SLiC-HF with a reference, as TRL)
- dpo robust   (−(1−ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε)   (Chowdhury et al. 2024)
- ipo          (Δc/|yc| − Δr/|yr| − 1/(2β))²    (Azar et al. 2023 eq. 17 with log-ratios averaged per
               token, as TRL and, per TRL, the IPO authors' own experiments)
- simpo        −log σ(β(ā_c − ā_r) − γ), ā = mean log-prob per answer token, no reference (Meng et al. 2024)
- orpo         −(1/|yc|) log πθ(yc|x) − β log σ(log odds(yc) − log odds(yr)), odds from the mean
               log-probs (Hong et al. 2024 eq. 6-7). TRL differs from the paper here: its NLL
               term covers the prompt tokens too and is a token mean over the whole batch; we
               follow the paper (the chosen answer's tokens, a mean per example).
- kto          λD(1 − σ(β(r − z0))) for desirable answers, λU(1 − σ(β(z0 − r))) for undesirable,
               r = log-ratio, z0 = max(0, mean log-ratio of mismatched (prompt, answer) pairs of
               the micro-batch), no gradient through z0 (Ethayarajh et al. 2024 eq. 7-8, as TRL).
Rewards (logged): β·log-ratio (dpo, ipo, kto), β·ā (simpo, orpo), as TRL logs them.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tunelab.train.batching import IGNORE
from tunelab.train.loss import HEAD_CHUNK, CompletionLoss
from tunelab.train.probes import base_lm, shared_prompt_is_exact

PAIR_OBJECTIVES = ("dpo", "ipo", "simpo", "orpo")
REFERENCE_FREE = ("simpo", "orpo")
# Metrics logged per step: each is a mean over the items (pairs; kto: the examples of its kind).
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected", "kl", "nll_loss", "log_odds_ratio")
DEFAULT_BETA = {"dpo": 0.1, "ipo": 0.1, "kto": 0.1, "simpo": 2.0, "orpo": 0.1}


def beta_of(objective: str, options) -> float:
    return options.beta if options.beta is not None else DEFAULT_BETA[objective]


def check_preference(cfg) -> None:
    """What a preference objective needs, before any model loads (ConfigError naming the key)."""
    from tunelab.config.base import ConfigError
    from tunelab.models.tuners import get_method

    t = cfg.train
    if t.objective == "sft":
        return
    kind = "kto" if t.objective == "kto" else "preference"
    wrong = [f"{task.name} ({task.kind})" for task in cfg.data.tasks if task.kind != kind]
    if wrong:
        raise ConfigError(f"train.objective {t.objective} trains on tasks of kind {kind}; not: {', '.join(wrong)}")
    method = get_method(t.method)
    if t.packing or method.peft_forward or cfg.model.architecture == "seq2seq":
        raise ConfigError(f"train.objective {t.objective}: not with train.packing, method {t.method} or seq2seq models")
    if t.objective == "kto" and not method.peft:
        # KTO's KL rows pair prompts with other answers of the micro-batch, which change every
        # epoch: their reference log-probs cannot be stored once (dpo and ipo's can).
        raise ConfigError(f"train.objective kto with train.method {t.method}: the reference model is the base with "
                          f"the adapter disabled, so kto needs an adapter method (lora, dora, ia3, qlora)")
    if t.objective == "kto" and t.batch_size < 2:
        raise ConfigError("train.objective kto estimates its KL term from the other examples of a micro-batch: "
                          "train.batch_size must be 2 or more")


def stored_reference(t) -> bool:
    """Whether the reference log-probs are computed once before training and kept with the
    examples: dpo and ipo without an adapter to switch off (full, freeze)."""
    from tunelab.models.tuners import get_method

    return t.objective in ("dpo", "ipo") and not get_method(t.method).peft


@torch.no_grad()
def store_reference_logps(loss_model, data, autocast, device, batch_size: int, pad_id: int) -> None:
    """The starting model's summed log-probs of every training pair's chosen and rejected answer,
    into each example's `reference_logps` (as TRL's precompute_ref_log_probs), in eval mode (no
    dropout: the reference is the model itself). Called before any step and before a resume
    restores trained weights, so every start computes the same values from the same base.

    In each layout a training micro-batch may take (two rows; one row per pair where the model
    allows it and the prompt is not empty), because in bf16 the layouts round differently: on
    SmolLM2 a 400-token answer's log-prob moves by up to ~1 nat between them, which a reference
    from the other layout would add to the implicit reward. Within a layout, eager attention gives
    the same value whatever the batch (tests/train/test_preference_layout.py)."""
    from tunelab.train.preference_batches import collate_preference, preference_items

    examples = [ex for task in data.tasks.values() for ex in task.splits["train"]]
    layouts = ["two", "one"] if loss_model.shared_prompt else ["two"]
    was_training = loss_model.training
    loss_model.eval()
    try:
        for s in range(0, len(examples), batch_size):
            chunk = examples[s:s + batch_size]
            items = preference_items(chunk, "dpo")
            refs = [{} for _ in chunk]
            for layout in layouts:
                keep = [i for i, it in enumerate(items) if layout == "two" or it.prompt_ids]
                if not keep:
                    continue
                t = collate_preference([items[i] for i in keep], pad_id, layout=layout).tensors
                with autocast():
                    logps, _ = loss_model.logps({k: v.to(device) for k, v in t.items()})
                values = logps.float().cpu().tolist()
                for j, i in enumerate(keep):
                    refs[i][layout] = (values[j], values[len(keep) + j])
            for ex, ref in zip(chunk, refs):
                ex.reference_logps = ref
    finally:
        loss_model.train(was_training)


# ---- log-probabilities ---------------------------------------------------------------------


def _token_logps(head, hidden, targets):
    logits = head(hidden).float()
    return -F.cross_entropy(logits, targets, reduction="none")


def chunked_token_logps(head, hidden, targets, chunk: int = HEAD_CHUNK):
    """log p(target) of each row of head(hidden), HEAD_CHUNK rows at a time, each chunk
    checkpointed in backward (the same memory bound as train/loss.py's chunked head)."""
    parts = []
    for s in range(0, len(targets), chunk):
        h, t = hidden[s:s + chunk], targets[s:s + chunk]
        parts.append(checkpoint(_token_logps, head, h, t, use_reentrant=False) if torch.is_grad_enabled()
                     else _token_logps(head, h, t))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def completion_logps(model, batch: dict, fast: bool):
    """(summed log-probs of each answer's labelled tokens (float32), their number per answer).

    batch: `input_ids` with `labels` and `attention_mask` (a row per answer), or with `segments`
    (a row per pair: prompt, chosen, rejected; train/preference_batches.py), whose answers come
    out in the two-row order: every chosen answer, then every rejected one.
    fast: the LM head only on labelled positions (CompletionLoss's probe says it is exact);
    otherwise the model's own logits."""
    input_ids = batch["input_ids"]
    if batch.get("segments") is not None:
        return _shared_prompt_logps(model, input_ids, batch["segments"], fast)
    labels, attention_mask = batch["labels"], batch["attention_mask"]
    targets = labels[:, 1:]
    keep = targets != IGNORE
    if fast:
        lm = base_lm(model)
        body = getattr(lm, lm.base_model_prefix)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        per_token = chunked_token_logps(lm.get_output_embeddings(), hidden[:, :-1][keep], targets[keep])
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        logits = logits[:, -input_ids.shape[1]:][:, :-1][keep].float()
        per_token = torch.gather(logits.log_softmax(-1), 1, targets[keep].unsqueeze(1)).squeeze(1)
    rows = keep.nonzero()[:, 0]
    sums = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
    return sums.index_add(0, rows, per_token), keep.sum(1)


# Attention's work per FLOP costs about this many times a linear layer's: its passes over the
# scores (scale, mask, softmax, casts) are memory-bound. Fitted on SmolLM2-135M LoRA, 2-core AMD
# EPYC, pairs at max_length 256 and 512: with it, layout_cost ranks one row against two as the
# measured step times do.
ATTENTION_SLOWDOWN = 3.0


def attention_weight(config) -> float:
    """Attention's cost per query-key pair relative to the linear layers' cost per position (one
    layer; the LM head, on the scored tokens only, is the same in both layouts)."""
    config = getattr(config, "text_config", None) or config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    if not hidden or not heads:
        return 0.0
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    inner = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
    inner *= getattr(config, "num_experts_per_tok", None) or 1  # MoE: the experts a token runs through
    linear = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + 3 * hidden * inner
    return ATTENTION_SLOWDOWN * 2 * heads * head_dim / linear  # 4 FLOPs a pair and head-dim vs 2 a weight


def shared_mask_kind(model) -> str | None:
    """The 4D mask the model's attention takes as given (transformers passes a 4D mask through):
    boolean for sdpa, additive for eager attention; None for kernels that take no such mask."""
    from tunelab.train.attention import ATTENTION

    impl = getattr(base_lm(model).config, "_attn_implementation", None)
    return "bool" if impl == "sdpa" else "additive" if impl in ("eager", ATTENTION) else None


def shared_prompt_inputs(segments, width: int, mask_kind: str, dtype):
    """For rows of (prompt, chosen, rejected) of the given lengths: (position ids, the 4D attention
    mask, the flat position whose hidden state predicts each scored token, the scored tokens'
    (row, column), each one's answer slot: pair i's chosen answer i, its rejected answer n + i).

    The rejected answer attends to the prompt and to itself, never to the chosen answer, and its
    positions continue the prompt's; its first token is predicted from the prompt's last position,
    like the chosen answer's: each answer's log-probs are those it gets after the prompt alone."""
    n = segments.shape[0]
    idx = torch.arange(width, device=segments.device)
    prompt, chosen, rejected = (segments[:, i, None] for i in range(3))
    rejected_start, end = prompt + chosen, prompt + chosen + rejected
    in_chosen = (idx >= prompt) & (idx < rejected_start)
    in_rejected = (idx >= rejected_start) & (idx < end)
    valid = idx < end
    positions = torch.where(valid, torch.where(in_rejected, idx - chosen, idx), 0)  # pads: 0, never read
    allowed = (idx[:, None] >= idx[None, :]) & valid[:, None, :] & ~(in_rejected[:, :, None] & in_chosen[:, None, :])
    if mask_kind == "bool":
        mask = allowed[:, None]
    else:
        mask = torch.zeros(allowed.shape, dtype=dtype, device=idx.device).masked_fill_(~allowed, torch.finfo(dtype).min)
        mask = mask[:, None]
    source = torch.where(idx == rejected_start, prompt - 1, idx - 1)
    rows, cols = (in_chosen | in_rejected).nonzero(as_tuple=True)
    slot = torch.where(in_chosen[rows, cols], rows, rows + n)
    return positions, mask, rows * width + source[rows, cols], (rows, cols), slot


def _shared_prompt_logps(model, input_ids, segments, fast: bool):
    lm = base_lm(model)
    kind = shared_mask_kind(model)
    if kind is None:
        raise ValueError(f"shared-prompt rows need eager or sdpa attention, not {lm.config._attn_implementation}")
    n, width = input_ids.shape
    positions, mask, source, (rows, cols), slot = shared_prompt_inputs(
        segments, width, kind, lm.get_input_embeddings().weight.dtype)
    targets = input_ids[rows, cols]
    if fast:
        body = getattr(lm, lm.base_model_prefix)
        hidden = body(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
        per_token = chunked_token_logps(lm.get_output_embeddings(), hidden.reshape(n * width, -1)[source], targets)
    else:
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
        logits = logits.reshape(n * width, -1)[source].float()
        per_token = torch.gather(logits.log_softmax(-1), 1, targets.unsqueeze(1)).squeeze(1)
    sums = torch.zeros(2 * n, dtype=torch.float32, device=input_ids.device)
    return sums.index_add(0, slot, per_token), torch.bincount(slot, minlength=2 * n)


def reference_context(model):
    """The reference model: the same weights with the adapter switched off (PEFT), no gradients."""
    off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    stack.enter_context(off)
    return stack


# ---- the objectives ------------------------------------------------------------------------


def log1mexp(x):
    """log(1 − exp(x)) for x < 0, without cancellation (Mächler 2012)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def pair_losses(objective: str, options, chosen, rejected, n_chosen, n_rejected, ref_chosen=None,
                ref_rejected=None) -> tuple[torch.Tensor, dict]:
    """Per-pair losses and the pairs' metrics (per-pair tensors) of one pair objective.

    chosen/rejected: summed answer log-probs under the policy; n_*: answer tokens; ref_*: the
    reference's summed log-probs (dpo, ipo)."""
    beta = beta_of(objective, options)
    n_c, n_r = n_chosen.clamp(min=1).float(), n_rejected.clamp(min=1).float()
    extra = {}
    if objective in ("dpo", "ipo"):
        chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
        delta = chosen_ratio - rejected_ratio
        if objective == "ipo":
            losses = (chosen_ratio / n_c - rejected_ratio / n_r - 1 / (2 * beta)) ** 2
        elif options.dpo_loss == "sigmoid":
            losses = -F.logsigmoid(beta * delta)
        elif options.dpo_loss == "hinge":
            losses = torch.relu(1 - beta * delta)
        else:  # robust
            eps = options.label_smoothing
            losses = (-(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1 - 2 * eps)
        rewards = beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
    elif objective == "simpo":
        mean_c, mean_r = chosen / n_c, rejected / n_r
        losses = -F.logsigmoid(beta * (mean_c - mean_r) - options.simpo_gamma)
        rewards = beta * mean_c.detach(), beta * mean_r.detach()
    elif objective == "orpo":
        mean_c, mean_r = chosen / n_c, rejected / n_r
        log_odds = (mean_c - mean_r) - (log1mexp(mean_c) - log1mexp(mean_r))
        ratio = F.logsigmoid(log_odds)
        nll = -mean_c
        losses = nll - beta * ratio
        rewards = beta * mean_c.detach(), beta * mean_r.detach()
        extra = {"nll_loss": nll.detach(), "log_odds_ratio": ratio.detach()}
    else:
        raise ValueError(f"not a pair objective: {objective}")
    chosen_r, rejected_r = rewards
    metrics = {"rewards/chosen": chosen_r, "rewards/rejected": rejected_r,
               "rewards/accuracies": (chosen_r > rejected_r).float(), "rewards/margins": chosen_r - rejected_r,
               "logps/chosen": chosen.detach(), "logps/rejected": rejected.detach(), **extra}
    return losses, metrics


def kto_losses(options, logps, ref_logps, desirable, kl_logps, ref_kl_logps) -> tuple[torch.Tensor, dict]:
    """Per-example KTO losses and metrics; z0 from the micro-batch's mismatched pairs."""
    beta = beta_of("kto", options)
    kl = (kl_logps - ref_kl_logps).mean().detach().clamp(min=0)
    ratio = logps - ref_logps
    losses = torch.where(desirable, options.desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl))),
                         options.undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio))))
    rewards = beta * ratio.detach()
    return losses, {"rewards": rewards, "logps": logps.detach(), "kl": kl}


# ---- the module the training step calls ----------------------------------------------------


class PreferenceLoss(CompletionLoss):
    """CompletionLoss for a preference objective. Called with a pair batch (`n_pairs`: rows
    [0, n) chosen, [n, 2n) rejected) or a kto batch (`desirable`, `kl_*` rows), it returns
    (sum of the items' losses, {metric: (sum, count)}); called with an SFT batch (validation
    loss of the chosen answers), it is CompletionLoss."""

    def __init__(self, model, architecture: str, method: str, objective: str, options, max_length: int | None = None):
        if architecture != "causal":
            from tunelab.config.base import ConfigError

            raise ConfigError(f"train.objective {objective} needs a causal language model (this one is {architecture})")
        super().__init__(model, architecture, method)
        self.objective, self.options = objective, options
        # a pair in one row (train/preference_batches.py), where the model's probe says it is exact;
        # the row holds the prompt and both answers: at most twice max_length tokens
        self.shared_prompt = objective in PAIR_OBJECTIVES and shared_prompt_is_exact(
            model, 2 * max_length if max_length else None)
        self.attention_weight = attention_weight(base_lm(model).config)

    def logps(self, batch: dict, reference: bool = False):
        if reference:
            with reference_context(self.model):
                return completion_logps(self.model, batch, self.skip_masked_head)
        return completion_logps(self.model, batch, self.skip_masked_head)

    def forward(self, input_ids, labels=None, attention_mask=None, position_ids=None, n_pairs=None, desirable=None,
                kl_input_ids=None, kl_labels=None, kl_attention_mask=None, ref_logps=None, ref_kl_logps=None,
                segments=None):
        if n_pairs is None and desirable is None:
            return super().forward(input_ids, labels, attention_mask, position_ids)
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask, "segments": segments}
        logps, counts = self.logps(batch)
        needs_ref = self.objective not in REFERENCE_FREE
        if needs_ref and ref_logps is None:
            ref_logps, _ = self.logps(batch, reference=True)
        if desirable is not None:
            return self._kto(logps, ref_logps, desirable, kl_input_ids, kl_labels, kl_attention_mask, ref_kl_logps)
        n = int(n_pairs)
        ref = (ref_logps[:n], ref_logps[n:]) if needs_ref else (None, None)
        losses, metrics = pair_losses(self.objective, self.options, logps[:n], logps[n:], counts[:n], counts[n:], *ref)
        return losses.sum(), {k: (v.sum(), float(n)) for k, v in metrics.items()}

    def _kto(self, logps, ref_logps, desirable, kl_ids, kl_labels, kl_mask, ref_kl_logps):
        kl_batch = {"input_ids": kl_ids, "labels": kl_labels, "attention_mask": kl_mask}
        with torch.no_grad():
            kl_logps, _ = completion_logps(self.model, kl_batch, self.skip_masked_head)
        if ref_kl_logps is None:
            ref_kl_logps, _ = self.logps(kl_batch, reference=True)
        desirable = desirable.bool()
        losses, m = kto_losses(self.options, logps, ref_logps, desirable, kl_logps, ref_kl_logps)
        good, bad = desirable.float(), (~desirable).float()
        n_good, n_bad = float(good.sum()), float(bad.sum())
        metrics = {"rewards/chosen": ((m["rewards"] * good).sum(), n_good),
                   "rewards/rejected": ((m["rewards"] * bad).sum(), n_bad),
                   "logps/chosen": ((m["logps"] * good).sum(), n_good),
                   "logps/rejected": ((m["logps"] * bad).sum(), n_bad),
                   "kl": (m["kl"] * len(desirable), float(len(desirable)))}
        return losses.sum(), metrics
