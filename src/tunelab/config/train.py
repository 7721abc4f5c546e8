"""`train:` section: method, optimizer, schedule, batching, validation, checkpoints.

Every key has a default that trains a LoRA adapter sensibly; docs/training.md is the reference.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tunelab.config.base import StrictModel

METHODS = ("full", "freeze", "lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "qlora")
# sft: completion-only cross-entropy; the others learn from preferences (docs/preference.md):
# dpo, ipo, simpo, orpo from pairs (task kind `preference`), kto from unpaired answers (kind `kto`).
OBJECTIVES = ("sft", "dpo", "ipo", "simpo", "orpo", "kto")


class LoraOptions(StrictModel):
    """Used by `lora`, `dora` and `qlora`."""

    r: int = Field(8, ge=1)
    alpha: float = 16.0
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # Module names (suffix match, as peft) or "all-linear" (every linear layer but the LM head).
    target_modules: list[str] | str = "all-linear"
    bias: Literal["none", "all", "lora_only"] = "none"
    # Extra modules trained in full and saved with the adapter (e.g. ["lm_head"]).
    modules_to_save: list[str] | None = None
    use_rslora: bool = False


class QloraOptions(StrictModel):
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True


class FreezeOptions(StrictModel):
    # Train only the last N transformer layers (plus `modules`); 0 = none of them.
    last_n_layers: int = Field(2, ge=0)
    # Extra parameter-name substrings to train, e.g. ["norm", "lm_head"].
    modules: list[str] = []


class Ia3Options(StrictModel):
    # None: peft's defaults for the model type (Llama-style names where peft has none).
    target_modules: list[str] | str | None = None
    feedforward_modules: list[str] | str | None = None


class PromptTuningOptions(StrictModel):
    num_virtual_tokens: int = Field(20, ge=1)
    # Initialise the virtual tokens from this text's embeddings; random when empty.
    init_text: str = ""


class PrefixTuningOptions(StrictModel):
    num_virtual_tokens: int = Field(20, ge=1)
    prefix_projection: bool = False


class GenerationValidation(StrictModel):
    """Score a validation subset with the evaluation engine: each task's own metrics."""

    enabled: bool = False
    limit: int = Field(64, ge=1)
    # None: each task's own max_new_tokens (tunelab.config.scoring), as every other command uses.
    max_new_tokens: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)


class EarlyStopping(StrictModel):
    # Any logged validation key, e.g. "val_loss", "val_accuracy", "val_loss/sst2".
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(3, ge=1)
    min_delta: float = 0.0


class DistributedOptions(StrictModel):
    """How several processes (accelerate launch, torchrun) share a run (train/distributed.py)."""

    # ddp: a whole replica per process, gradients averaged. fsdp: parameters, gradients and
    # optimizer state sharded across processes (FSDP2, one unit per decoder layer); checkpoints
    # are sharded too and resume on any number of processes.
    strategy: Literal["ddp", "fsdp"] = "ddp"
    # fsdp: free each layer's gathered parameters after its forward (gathered again in backward).
    reshard_after_forward: bool = True
    # fsdp on CUDA: keep the shards of parameters, gradients and optimizer state in CPU memory.
    cpu_offload: bool = False


class FisherOptions(StrictModel):
    """EWC's diagonal Fisher: the data an earlier stage trained on (its train split)."""

    # Task references as in forgetting.tasks: bare names of data.tasks (or of dict entries of
    # forgetting.tasks), RECIPE=PATH, or task dicts. Their train split is used, never test.
    tasks: list[str | dict[str, Any]] = []
    # Examples per task: the first N of its train split (deterministic for the config's seed).
    examples: int = Field(64, ge=1)


class RegularizationOptions(StrictModel):
    """Keep the weights near where the run started (train/regularize.py): L2-SP or EWC."""

    # l2sp: (weight/2) * sum (theta - theta0)^2; ewc: the same, each term times its Fisher F_i.
    kind: Literal["l2sp", "ewc"] = "l2sp"
    # lambda; 0 = plain training, bit-identical.
    weight: float = Field(ge=0.0)
    fisher: FisherOptions | None = None  # ewc only

    @model_validator(mode="after")
    def _fisher_for_ewc(self):
        if self.kind == "l2sp" and self.fisher is not None:
            raise ValueError("'fisher' applies to kind ewc only (l2sp weighs every parameter the same)")
        if self.kind == "ewc" and (self.fisher is None or not self.fisher.tasks):
            raise ValueError("kind ewc needs fisher.tasks: the tasks whose train split the Fisher is computed "
                             "on (e.g. fisher: {tasks: [sentiment]})")
        return self


class PreferenceOptions(StrictModel):
    """`train.preference`: the preference objectives' hyperparameters (train/preference.py)."""

    # DPO/IPO/KTO: the KL strength (IPO's tau); SimPO: the reward scale; ORPO: the odds-ratio weight
    # (lambda). None: 0.1, but 2.0 for simpo (the papers' and TRL's defaults).
    beta: float | None = Field(None, gt=0)
    # dpo: -log sigmoid (the paper), hinge (SLiC), robust (label noise rate label_smoothing).
    dpo_loss: Literal["sigmoid", "hinge", "robust"] = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    simpo_gamma: float = Field(0.5, ge=0)  # SimPO's target reward margin (gamma)
    desirable_weight: float = Field(1.0, gt=0)  # KTO's lambda_D
    undesirable_weight: float = Field(1.0, gt=0)  # KTO's lambda_U

    @model_validator(mode="after")
    def _smoothing_for_robust(self):
        if self.label_smoothing and self.dpo_loss != "robust":
            raise ValueError("label_smoothing applies to dpo_loss robust only")
        return self


class TrainConfig(StrictModel):
    method: Literal[METHODS] = "lora"  # type: ignore[valid-type]
    objective: Literal[OBJECTIVES] = "sft"  # type: ignore[valid-type]
    preference: PreferenceOptions = Field(default_factory=PreferenceOptions)
    lora: LoraOptions = Field(default_factory=LoraOptions)
    qlora: QloraOptions = Field(default_factory=QloraOptions)
    freeze: FreezeOptions = Field(default_factory=FreezeOptions)
    ia3: Ia3Options = Field(default_factory=Ia3Options)
    prompt_tuning: PromptTuningOptions = Field(default_factory=PromptTuningOptions)
    prefix_tuning: PrefixTuningOptions = Field(default_factory=PrefixTuningOptions)

    # Optimizer: sgd | adam | adamw | adafactor | any torch.optim class name (e.g. "RMSprop").
    optimizer: str = "adamw"
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.0  # sgd
    nesterov: bool = False  # sgd
    optimizer_args: dict[str, Any] = {}  # passed to the optimizer class as-is
    scheduler: Literal["constant", "linear", "cosine"] = "linear"
    warmup_steps: int = Field(0, ge=0)
    # Fraction of the total steps; used when warmup_steps is 0.
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine/linear floor as a fraction of lr

    epochs: int = Field(1, ge=1)
    # Stop after this many optimizer steps (overrides epochs when set).
    max_steps: int | None = Field(None, ge=1)
    # Examples per process per micro-batch; the global batch is batch_size * grad_accum * processes.
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float | None = 1.0  # null disables clipping
    # auto: bf16 where the hardware runs it natively (CUDA with bf16, CPUs with AVX512-BF16 or
    # AMX), fp32 elsewhere -- on an AVX2-only CPU bf16 matmuls are emulated and several times slower.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # For LoRA-family methods with bf16/fp16 precision: keep the frozen base weights in that
    # dtype (adapters stay fp32). Saves memory and the per-step weight casts of autocast.
    half_frozen_weights: bool = True
    include_prompt_loss: bool = False
    packing: bool = False
    # Tokens per packed row; default: the longest example.
    pack_length: int | None = Field(None, ge=8)
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    # With gradient_checkpointing: recompute every N-th decoder layer only (1 = all of them).
    # Larger N trades memory back for speed (SmolLM2 LoRA on CPU: see docs/training.md).
    gradient_checkpointing_every: int = Field(1, ge=1)
    # Without gradient_checkpointing: backward recomputes RMSNorms and the gated MLP's activation
    # (elementwise ops) instead of keeping their outputs; bit-identical gradients (train/recompute.py).
    selective_recompute: bool = True
    # torch.compile of the decoder layers' training pass (train/compile.py): true, false, or auto
    # (on CPU, one process, a causal LM, a C++ compiler, and enough work to pay back the compile).
    compile: bool | Literal["auto"] = "auto"
    distributed: DistributedOptions = Field(default_factory=DistributedOptions)
    # L2-SP or EWC against forgetting (docs/training.md, "Regularised fine-tuning"); none by default.
    regularization: RegularizationOptions | None = None

    eval_every: int | None = Field(None, ge=1)  # steps; validation also runs at each epoch end
    eval_at_start: bool = False  # validate the untrained model first (a baseline in metrics.jsonl)
    eval_batch_size: int = Field(16, ge=1)
    eval_limit: int | None = Field(None, ge=1)  # validation examples per task for val_loss
    eval_generation: GenerationValidation = Field(default_factory=GenerationValidation)
    early_stopping: EarlyStopping | None = None

    checkpoint_every: int | None = Field(None, ge=1)  # steps; a checkpoint is also written at the end
    keep_last: int = Field(2, ge=1)
    keep_best: bool = True

    seed: int | None = None  # default: the top-level seed
    log_every: int = Field(1, ge=1)
    progress: Literal["auto", "bar", "plain", "off"] = "auto"
    # Experiment trackers fed while training (tunelab.train.trackers); each needs its package
    # (pip install 'tunelab[mlflow]', 'tunelab[wandb]', 'tunelab[tensorboard]').
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = []
    tracker_project: str = "tunelab"  # the MLflow experiment / W&B project
    tracker_uri: str | None = None  # MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's)
