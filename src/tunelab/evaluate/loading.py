"""What model to evaluate: a base model, base + PEFT adapter, or a run folder's final/.

The model is loaded lazily: when every answer is in the cache, the weights are never read.
LoRA-family adapters are merged into the weights for evaluation (one matmul per layer instead
of three); prompt/prefix tuning stay as PEFT models. With `alpha` set, the merged tuned weights
are interpolated with the base model's (WiSE-FT, tunelab.models.interpolate): 0 is the base
model, 1 the model as trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.config.base import UserError
from tunelab.evaluate.cache import fingerprint
from tunelab.runfolder import RunFolder


# model: keys that say how to load the weights (not which): a run's own are reused for its model.
LOAD_OPTIONS = ("revision", "trust_remote_code", "allow_pickle", "attn_implementation")


@dataclass
class ModelSpec:
    base: str  # alias, local folder or hub id of the base model
    adapter: str | None = None  # PEFT adapter folder
    full_model: str | None = None  # a run's final/ when it holds full weights
    dtype: str = "float32"
    label: str = ""
    run: str | None = None
    # ModelConfig keys for loading (LOAD_OPTIONS): revision, trust_remote_code, allow_pickle, ...
    options: dict = field(default_factory=dict)
    # WiSE-FT: (1 - alpha) * base + alpha * tuned weights; None = the model as trained
    alpha: float | None = None

    def __post_init__(self):
        from tunelab.models.interpolate import check_alpha

        self.alpha = check_alpha(self.alpha)


def load_options(model_cfg) -> dict:
    """The LOAD_OPTIONS a `model:` section sets (a mapping or a ModelConfig)."""
    get = model_cfg.get if isinstance(model_cfg, dict) else lambda k: getattr(model_cfg, k, None)
    return {k: get(k) for k in LOAD_OPTIONS if get(k) not in (None, False)}


def run_model_section(run: Path) -> dict:
    folder = RunFolder.of(run)
    if not folder.has_config():
        raise UserError(f"{run}: not a run folder (no config.resolved.yaml)")
    return folder.config.get("model") or {}


def run_base_model(run: Path) -> str:
    return str(run_model_section(run).get("name") or "smollm2-135m-instruct")


def model_spec(model: str | None = None, adapter: str | None = None, run: str | None = None,
               dtype: str = "float32", options: dict | None = None, alpha: float | None = None) -> ModelSpec:
    """Resolve the CLI's --model/--adapter/--run into one ModelSpec. A run's model is loaded with
    the run's own load options (model.allow_pickle, trust_remote_code, revision); `options` adds to them.
    alpha: interpolate the tuned weights with the base's (WiSE-FT), 0 <= alpha <= 1."""
    spec = _model_spec(model, adapter, run, dtype)
    spec.alpha = check_interpolable(spec, alpha)
    if spec.run:
        spec.options = load_options(run_model_section(Path(spec.run)))
    spec.options.update({k: v for k, v in (options or {}).items() if v not in (None, False)})
    return spec


def _model_spec(model: str | None, adapter: str | None, run: str | None, dtype: str) -> ModelSpec:
    if adapter and run:
        raise UserError("give --adapter or --run, not both")
    if adapter and (Path(adapter) / "final").is_dir():
        run, adapter = adapter, None  # an adapter given as a run folder
    if run:
        run_path = Path(run)
        if not run_path.is_dir():
            raise UserError(f"run folder {run} does not exist")
        base = model or run_base_model(run_path)
        final = run_path / "final"
        if (final / "adapter_config.json").exists():
            return ModelSpec(base, adapter=str(final), dtype=dtype, label=run_path.name, run=str(run_path))
        if (final / "config.json").exists():
            return ModelSpec(base, full_model=str(final), dtype=dtype, label=run_path.name, run=str(run_path))
        raise UserError(f"{run}: the run has no final/ adapter or model (did training finish?)")
    if not model and adapter:  # the base the adapter names (models/portable.py), resolved here
        from tunelab.models.portable import base_model_of

        model = base_model_of(adapter)
    if not model:
        raise UserError("give --model (and optionally --adapter), or --run")
    if adapter and not (Path(adapter) / "adapter_config.json").exists():
        raise UserError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    return ModelSpec(model, adapter=adapter, dtype=dtype, label=Path(adapter).name if adapter else Path(model).name)


def check_interpolable(spec: ModelSpec, alpha: float | None) -> float | None:
    """alpha for this model, or a one-line refusal: no tuned weights, or an adapter that does not
    merge (prompt/prefix tuning add virtual tokens: nothing in the base to interpolate with)."""
    from tunelab.models.interpolate import check_alpha

    alpha = check_alpha(alpha)
    if alpha is None:
        return None
    if not spec.adapter and not spec.full_model:
        raise UserError("alpha interpolates a tuned model with its base: give a run or an adapter")
    if spec.adapter:
        config = Path(spec.adapter) / "adapter_config.json"
        peft_type = str(json.loads(config.read_text(encoding="utf-8")).get("peft_type", "")) if config.exists() else ""
        if any(t in peft_type for t in ("PROMPT", "PREFIX", "P_TUNING")):
            raise UserError(f"{spec.adapter}: a {peft_type.lower()} adapter adds virtual tokens and cannot be "
                            "interpolated with the base weights (only methods that merge: full, LoRA, DoRA, IA3)")
    return alpha


def spec_fingerprint(spec: ModelSpec) -> dict:
    from tunelab.models import resolve_model

    weights = spec.full_model or resolve_model(spec.base)
    found = {"model": fingerprint(weights), "adapter": fingerprint(spec.adapter), "dtype": spec.dtype}
    if spec.alpha is not None:  # the interpolated weights also depend on the base's
        found.update(alpha=spec.alpha, base=fingerprint(resolve_model(spec.base)))
    return found


@dataclass
class LazyModel:
    spec: ModelSpec
    counter: object = None
    _model: object = None
    _tokenizer: object = None
    loads: int = field(default=0)

    def adapter_tokenizer(self) -> str | None:
        """The adapter folder when it holds a tokenizer: a run saves its own there (final/), with
        the chat template it was trained with (data.chat_template), which the base's may lack."""
        folder = self.spec.adapter
        return folder if folder and (Path(folder) / "tokenizer_config.json").exists() else None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from tunelab.config.model import ModelConfig
            from tunelab.models.load import load_tokenizer
            from tunelab.models import resolve_model

            name = self.spec.full_model or self.spec.base
            path = self.adapter_tokenizer() or resolve_model(name)
            self._tokenizer = load_tokenizer(path, ModelConfig(name=name, **self.spec.options))
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            from tunelab.config.model import ModelConfig
            from tunelab.models.load import load_model

            name = self.spec.full_model or self.spec.base
            model, tok = load_model(ModelConfig(name=name, dtype=self.spec.dtype, **self.spec.options),
                                    adapter=self.spec.adapter, device=scoring_device())
            if self.spec.adapter is not None:  # merged; prompt/prefix tuning's virtual tokens run as they are
                from tunelab.models.tuners import merge_into_base

                model = merge_into_base(model, keep_unmergeable=True)
            if self.spec.alpha is not None:
                model = self.interpolated(model)
            model.eval()
            self._model = model
            self._tokenizer = self._tokenizer or (self.tokenizer if self.adapter_tokenizer() else tok)
            self.loads += 1
            if self.counter is not None:
                self.counter.model_loads += 1
        return self._model

    def interpolated(self, model):
        """The merged tuned model moved to (1 - alpha) * base + alpha * tuned (WiSE-FT)."""
        from tunelab.config.model import ModelConfig
        from tunelab.models.interpolate import interpolate_, load_base_state

        check_interpolable(self.spec, self.spec.alpha)
        base = ModelConfig(name=self.spec.base, **self.spec.options)
        return interpolate_(model, load_base_state(base, self.spec.dtype), self.spec.alpha)

    def max_positions(self) -> int | None:
        cfg = getattr(self._model, "config", None)
        return getattr(cfg, "max_position_embeddings", None) if cfg is not None else None


def scoring_device() -> str | None:
    """This process's GPU when there is one (LOCAL_RANK's under a launcher), else None: the CPU."""
    import os

    import torch

    if not torch.cuda.is_available():
        return None
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
