"""Present every model to the evaluation engine as a decoder-only LM with a KV cache.

The engine (generation.py, loglikelihood.py) speaks one protocol: `model(input_ids, attention_mask,
position_ids, cache, [logits_to_keep])` on left-padded prompts with positions taken from the mask,
then one token per row and step with the returned cache; rows leave the batch through
`cache.batch_select_indices`. Two kinds of model do not fit it as they are:

- encoder-decoders (T5, BART): the prompt is the encoder's input and the answer the decoder's.
  `Seq2SeqView` encodes the prompt (its padding moved to the end first: BART's learned positions
  must start at 0, as they do for a prompt alone), then every call is one decoder step; the encoder's output and
  mask live in the cache object, so they follow the rows that stay in the batch.
- prompt and prefix tuning (peft): peft's own forward prepends the virtual tokens on every call
  and drops position ids, which fits a whole sequence but not cached decoding. `VirtualTokenView`
  adds them once, on the prompt's call (embeddings before the prompt, or the prefix's keys and
  values as the start of the cache), and shifts positions and mask past them on every call;
  `Seq2SeqView` adds them where peft's forward does (before the encoder's input, or the prefix in
  the decoder's cache).
"""

from __future__ import annotations

import functools
import inspect
from types import SimpleNamespace

import torch

from tunelab.config.base import UserError


def inner_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_encoder_decoder(model) -> bool:
    return bool(getattr(inner_model(model).config, "is_encoder_decoder", False))


def virtual_tokens(model) -> tuple[str, int] | None:
    """("prompt" | "prefix", number of virtual tokens) for a peft prompt/prefix-tuning model, else None."""
    config = getattr(model, "active_peft_config", None)
    if not getattr(config, "is_prompt_learning", False):
        return None
    kind = {"PROMPT_TUNING": "prompt", "PREFIX_TUNING": "prefix"}.get(config.peft_type.value)
    if kind is None:
        raise UserError(f"{config.peft_type.value.lower()} adapters cannot be evaluated by tunelab's engine "
                        "(it knows prompt and prefix tuning)")
    return kind, config.num_virtual_tokens


def as_causal_lm(model):
    """The model itself, or a view of it that speaks the engine's protocol (module docstring)."""
    if isinstance(model, _View):
        return model
    if is_encoder_decoder(model):
        return Seq2SeqView(model)
    return VirtualTokenView(model) if virtual_tokens(model) else model


class _View:
    def __init__(self, model):
        self.model = model
        self.lm = inner_model(model)
        self.kind, self.n = virtual_tokens(model) or (None, 0)
        self.cache_arg = "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"

    def get_base_model(self):  # the engine inspects this forward's signature (cache / logits_to_keep)
        return self.lm

    def parameters(self):
        return self.model.parameters()

    def __getattr__(self, name):  # config, generation_config, ...
        if name == "model":  # not set yet (copy, pickle): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.model, name)


class EncoderState:
    """Marks a cache as the view's own: the decoder's caches plus the encoder's output and mask."""


@functools.cache
def _state_class():
    from transformers import EncoderDecoderCache  # imported when first needed: transformers is slow to import

    class State(EncoderDecoderCache, EncoderState):
        def batch_select_indices(self, indices):
            super().batch_select_indices(indices)
            self.encoder_hidden = self.encoder_hidden.index_select(0, indices)
            self.encoder_mask = self.encoder_mask.index_select(0, indices)

    return State


def _encoder_state(hidden, mask, decoder_cache=None):
    from transformers import DynamicCache

    state = _state_class()(decoder_cache if decoder_cache is not None else DynamicCache(), DynamicCache())
    state.encoder_hidden, state.encoder_mask = hidden, mask
    return state


class Seq2SeqView(_View):
    def decoder_start(self) -> int:
        for source in (getattr(self.lm, "generation_config", None), self.lm.config):
            value = getattr(source, "decoder_start_token_id", None)
            if value is not None:
                return int(value)
        raise UserError(f"{self.lm.config.model_type}: the model config has no decoder_start_token_id")

    def encode(self, ids, mask):
        """The encoder's pass over the prompt, as peft's forward does it: prompt tuning puts the virtual
        tokens before the encoder's input; prefix tuning's keys and values start the decoder's cache."""
        batch, inputs, decoder_cache = len(ids), {"input_ids": ids}, None
        if self.kind == "prompt":
            embed = self.model.word_embeddings(ids)
            prompt = self.model.get_prompt(batch_size=batch)[:, :self.n].to(embed.dtype)
            inputs = {"inputs_embeds": torch.cat([prompt, embed], dim=1)}
            mask = torch.cat([torch.ones((batch, self.n), dtype=mask.dtype, device=mask.device), mask], dim=1)
        elif self.kind == "prefix":
            decoder_cache = self.model.get_prompt(batch).self_attention_cache
        hidden = self.lm.get_encoder()(**inputs, attention_mask=mask).last_hidden_state
        return _encoder_state(hidden, mask, decoder_cache)

    def __call__(self, input_ids, attention_mask=None, position_ids=None, use_cache=True, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        state = kwargs.get(self.cache_arg)
        if not isinstance(state, EncoderState):  # a prompt: encode it, then the decoder's first step
            mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            order = torch.argsort((mask == 0).to(torch.int8), dim=1, stable=True)  # left padding -> right
            state = self.encode(input_ids.gather(1, order), mask.gather(1, order))
            input_ids = torch.full((len(input_ids), 1), self.decoder_start(), dtype=torch.long, device=mask.device)
        # The decoder's rows all start together, so they need no padding, mask or positions of their own.
        out = self.lm(encoder_outputs=BaseModelOutput(last_hidden_state=state.encoder_hidden),
                      attention_mask=state.encoder_mask, decoder_input_ids=input_ids, use_cache=True,
                      **{self.cache_arg: state})
        return SimpleNamespace(logits=out.logits, cache=state)


class VirtualTokenView(_View):
    """A prompt- or prefix-tuned causal LM. Each row's layout is [padding, virtual tokens, prompt, ...],
    the layout of a prompt alone shifted right: with the virtual tokens before the padding instead, a
    sliding-window layer (Gemma-2/3, Mistral) would see them at a distance that depends on the
    padding. The prompt's call therefore runs row by row (prefix caches cannot be padded inside), and
    the rows' caches are left-padded into one; every later call is batched."""

    def __call__(self, input_ids, attention_mask, position_ids, use_cache=True, **kwargs):
        cache = kwargs.pop(self.cache_arg, None)
        if cache is None or cache.get_seq_length() == 0:
            return self.prompt_call(input_ids, attention_mask, kwargs)
        return self.lm(input_ids=input_ids, attention_mask=self.with_virtual(attention_mask),
                       position_ids=position_ids + self.n, use_cache=use_cache, **{self.cache_arg: cache}, **kwargs)

    def with_virtual(self, mask):
        """The engine's mask with n ones inserted before each row's first real column."""
        pads = (mask.cumsum(1) == 0).sum(1, keepdim=True)  # leading padding columns per row
        j = torch.arange(mask.shape[1] + self.n, device=mask.device)[None]
        order = torch.where(j < pads, j + self.n, torch.where(j < pads + self.n, j - pads, j))
        whole = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, self.n), mask], dim=1)
        return whole.gather(1, order)

    def prompt_call(self, input_ids, attention_mask, kwargs):
        from transformers import DynamicCache

        logits, layers = [], []
        width = input_ids.shape[1]
        for ids, mask in zip(input_ids, attention_mask):
            ids = ids[mask.bool()][None]
            out = self.lm(**self.alone(ids), use_cache=True, **kwargs)
            logits.append(out.logits[0, -min(ids.shape[1], out.logits.shape[1]):])  # the prompt's own columns
            row_cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            layers.append([(layer.keys, layer.values) for layer in row_cache.layers])
        columns = max(len(x) for x in logits)
        batch_logits = torch.stack([torch.nn.functional.pad(x, (0, 0, columns - len(x), 0)) for x in logits])
        cache = DynamicCache()
        for i in range(len(layers[0])):
            keys = torch.cat([_left_pad(row[i][0], self.n + width) for row in layers])
            values = torch.cat([_left_pad(row[i][1], self.n + width) for row in layers])
            cache.update(keys, values, i)
        return SimpleNamespace(logits=batch_logits, cache=cache)

    def alone(self, ids) -> dict:
        """A prompt alone, as peft's forward runs it (virtual embeddings first, or the prefix's cache)."""
        from transformers import DynamicCache

        n_ids, device = ids.shape[1], ids.device
        positions = torch.arange(self.n + n_ids, device=device)[None]
        mask = torch.ones((1, self.n + n_ids), dtype=torch.long, device=device)
        if self.kind == "prefix":
            prefix = self.model.get_prompt(1, max_cache_len=self.n + n_ids)
            cache = DynamicCache()  # full layers: sliding-window layers would drop columns the batch needs
            for i, layer in enumerate(prefix.layers):
                cache.update(layer.keys, layer.values, i)
            return {"input_ids": ids, "attention_mask": mask, "position_ids": positions[:, self.n:],
                    self.cache_arg: cache}
        embed = self.model.word_embeddings(ids)
        prompt = self.model.get_prompt(batch_size=1).to(embed.dtype)
        return {"inputs_embeds": torch.cat([prompt, embed], dim=1), "attention_mask": mask, "position_ids": positions,
                self.cache_arg: DynamicCache()}


def _left_pad(x, length: int):
    """A (1, heads, columns, dim) cache tensor with zero columns in front, up to `length` columns."""
    return torch.nn.functional.pad(x, (0, 0, length - x.shape[2], 0))
