"""Class scoring: the one function every stage uses, and the module the Trainer trains around it.

`class_logits(model, batch)` returns `(batch, num_classes)` class logits for any supported head; which
path runs follows from the batch content and `model.config`, never from a checkpoint name:

- **prompt** (masked LM, the original's default): run the encoder, take the hidden state at the mask,
  apply the LM head's transform and only the label-word rows of the decoder. Identical to the stock
  masked-LM logits at those rows, without projecting every position onto the whole vocabulary
  (XLM-R: 250,002 words) or materialising a `(batch, length, vocab)` tensor.
- **seq2seq** (mT5 / T5): prompt without a mask; the first decoder step's logits at the label rows.
- **classification**: `AutoModelForSequenceClassification` logits, or `AutoModelForMultipleChoice`
  logits for a multiple-choice task (XCOPA), whose batch holds one input per choice `(B, C, L)`.
- **candidates** (GeoMLAMA probing): class k = the mean log-probability of candidate k's pieces. A
  masked LM reads the prompt with as many masks as candidate k has pieces (so no candidate's length is
  leaked to the others); a seq2seq LM scores the pieces teacher-forced after `decoder_prefix_ids`.

Fine-tuning with the faithful full-vocabulary loss asks for the vocabulary logits at the mask too
(`return_vocab=True`); the class logits are then gathered from them, so both come from one pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alsace.errors import UserError


def class_logits(model, batch: dict, return_vocab: bool = False, return_hidden: bool = False):
    """Class logits `(B, C)` for a batch; with `return_vocab`, also the `(B, V)` logits at the mask; with
    `return_hidden` (an encoder's classification or prompt head on `(B, L)` inputs), also the encoder's hidden
    states from the same pass, a tuple of `(B, L, H)` (the embeddings' output, then every layer's).

    The batch holds `input_ids`, `attention_mask` `(B, L)` and, for prompt heads, `mask_pos` `(B,)` and
    `label_token_ids` `(B, C)` (the verbalizer's token id per class, per example, so that per-language
    label words can share a batch). Candidate batches: see `_candidate_scores`.
    """
    if return_hidden and ("candidate_token_ids" in batch or model.config.is_encoder_decoder
                          or batch["input_ids"].dim() != 2):
        raise ValueError("return_hidden needs an encoder's classification or prompt head on (B, L) inputs")  # pragma: no mutate
    if "candidate_token_ids" in batch:  # probing with per-row candidate answers
        return _candidate_scores(model, batch)
    if "label_token_ids" not in batch:  # classification or multiple-choice head
        inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
        if return_hidden:
            out = model(**inputs, output_hidden_states=True)
            return out.logits, out.hidden_states
        return model(**inputs).logits
    label_ids = batch["label_token_ids"]  # (B, C)
    if model.config.is_encoder_decoder:
        vocab = _first_decoder_step_logits(model, batch)  # (B, V)
        cls = vocab.gather(1, label_ids)
        return (cls, vocab) if return_vocab else cls
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if return_hidden:
        out = model.base_model(**inputs, output_hidden_states=True)
        return _prompt_class_logits(model, batch, out[0], return_vocab), out.hidden_states
    return _prompt_class_logits(model, batch, model.base_model(**inputs)[0], return_vocab)


def _prompt_class_logits(model, batch: dict, hidden: torch.Tensor, return_vocab: bool):
    """A masked LM's class logits (and with `return_vocab` the vocabulary's) from its last hidden states."""
    label_ids = batch["label_token_ids"]  # (B, C)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    at_mask = hidden[rows, batch["mask_pos"]]  # (B, H)
    transform, weight, bias = mlm_head_parts(model)
    z = transform(at_mask)  # (B, H)
    if return_vocab:
        vocab = F.linear(z, weight, bias)  # (B, V), one position per example
        return vocab.gather(1, label_ids), vocab
    rows_w = weight[label_ids]  # (B, C, H): only the label-word rows
    cls = torch.einsum("bh,bch->bc", z, rows_w.to(z.dtype))
    if bias is not None:
        cls = cls + bias[label_ids].to(cls.dtype)
    return cls


class ClassScorer(torch.nn.Module):
    """The module the Trainer trains: `forward(**batch)` is `class_logits(model, batch)`.

    Scoring is then the forward of the module that DDP, accelerate's autocast and `torch.compile`
    wrap, so DDP's gradient all-reduce and bf16 autocast apply to it as to any stock model. Its
    `state_dict` is the Hugging Face model's own (same keys), so a Trainer checkpoint of the scorer
    loads with `from_pretrained` and resumes into the scorer unchanged. Any other attribute is the
    model's (the Trainer reads `config`, `_keys_to_ignore_on_save`, `tie_weights`).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.train(model.training)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":  # not yet set (copying, unpickling)
                raise
            return getattr(self.model, name)

    def forward(self, labels=None, return_vocab: bool = False, return_hidden: bool = False, **batch):
        # `labels` belong to the loss, not to scoring; naming them lets the Trainer find the labels.
        return class_logits(self.model, batch, return_vocab, return_hidden)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict, assign)


def as_scorer(model) -> torch.nn.Module:
    """A model wrapped in `ClassScorer`; a scorer, or its DDP / DeepSpeed / compiled wrapper, unchanged."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model, keep_torch_compile=False)
    return model if isinstance(inner, ClassScorer) else ClassScorer(model)


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
NO_CANDIDATE = -1e4  # class logit of an absent (padding) candidate: probability ~0, finite in KL and bf16


def mlm_head_parts(model):
    """The LM head of a masked LM as `(transform, weight (V, H), bias (V,))`, by `config.model_type`.

    Stock logits = `transform(hidden) @ weight.T + bias`; splitting them lets callers project onto a
    few vocabulary rows only.
    """
    kind = model.config.model_type
    if kind in ("xlm-roberta", "roberta", "camembert", "xlm-roberta-xl"):
        head = model.lm_head
        return (lambda h: head.layer_norm(F.gelu(head.dense(h)))), head.decoder.weight, head.decoder.bias
    if kind in ("bert", "deberta-v2") and hasattr(model, "cls"):  # BERT; DeBERTa-v2 with legacy=True
        predictions = model.cls.predictions
        return predictions.transform, predictions.decoder.weight, predictions.decoder.bias
    if kind == "deberta-v2" and hasattr(model, "lm_predictions"):
        # The non-legacy head (mDeBERTa-v3's own): dense -> act -> LayerNorm, then the input embeddings.
        head = model.lm_predictions.lm_head
        transform = lambda h: head.LayerNorm(head.transform_act_fn(head.dense(h)))  # noqa: E731
        return transform, model.get_input_embeddings().weight, head.bias
    raise UserError(
        f"--head prompt: masked-LM head of model type {kind!r} is not supported yet "
        "(supported: xlm-roberta, roberta, bert, deberta-v2); use --head classification"
    )


def _first_decoder_step_logits(model, batch):
    """Seq2seq: vocabulary logits `(B, V)` of the first decoder step (no `generate`)."""
    start = model.config.decoder_start_token_id
    dec = torch.full((batch["input_ids"].shape[0], 1), start, device=batch["input_ids"].device)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=dec)
    return out.logits[:, 0]


def _candidate_scores(model, batch):
    """Probing scores `(B, K)`: mean log-probability of each candidate's pieces.

    `candidate_token_ids` `(B, K, P)` holds candidate k's pieces, padded with -100; a candidate with no
    piece is absent (rows have 2..K candidates) and scores `NO_CANDIDATE`. Masked LM: `input_ids`
    `(B, K, L)`, candidate k's input carries len(pieces_k) masks from `mask_pos` on. Seq2seq:
    `input_ids` `(B, L)` and `decoder_prefix_ids` `(B, S)` (T5's sentinel, or empty).
    """
    pieces = batch["candidate_token_ids"]  # (B, K, P)
    present = (pieces >= 0).any(-1)  # (B, K)
    valid = pieces[present] >= 0  # (N, P), N = present candidates
    if model.config.is_encoder_decoder:
        piece_logits = _seq2seq_piece_logits(model, batch, present, valid)  # (M, V), M = valid pieces
    else:
        piece_logits = _mlm_piece_logits(model, batch, present, valid)  # (M, V)
    targets = pieces[present][valid]  # (M,)
    logp = piece_logits.float().log_softmax(-1).gather(1, targets[:, None]).squeeze(1)  # (M,)
    per_piece = torch.zeros(valid.shape, dtype=logp.dtype, device=logp.device).masked_scatter(valid, logp)
    mean = per_piece.sum(-1) / valid.sum(-1)  # (N,)
    scores = torch.full(present.shape, NO_CANDIDATE, dtype=mean.dtype, device=mean.device)
    return scores.masked_scatter(present, mean)  # (B, K)


def _mlm_piece_logits(model, batch, present, valid):
    """Vocabulary logits `(M, V)` at every mask of every present candidate's input."""
    ids = batch["input_ids"][present]  # (N, L)
    hidden = model.base_model(input_ids=ids, attention_mask=batch["attention_mask"][present])[0]  # (N, L, H)
    starts = batch["mask_pos"][:, None].expand(present.shape)[present]  # (N,)
    offsets = torch.arange(valid.shape[1], device=ids.device)
    positions = (starts[:, None] + offsets).clamp(max=ids.shape[1] - 1)  # (N, P)
    at_masks = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))  # (N, P, H)
    transform, weight, bias = mlm_head_parts(model)
    return F.linear(transform(at_masks[valid]), weight, bias)  # (M, V)


def _seq2seq_piece_logits(model, batch, present, valid):
    """Vocabulary logits `(M, V)` of the teacher-forced decoder at every piece of every present candidate."""
    k = present.shape[1]
    ids = batch["input_ids"][:, None].expand(-1, k, -1)[present]  # (N, L): the prompt once per candidate
    attn = batch["attention_mask"][:, None].expand(-1, k, -1)[present]
    prefix = batch["decoder_prefix_ids"][:, None].expand(-1, k, -1)[present]  # (N, S)
    targets = torch.cat([prefix, batch["candidate_token_ids"][present]], 1)  # (N, S + P)
    start = torch.full_like(targets[:, :1], model.config.decoder_start_token_id)
    decoder_input_ids = torch.cat([start, targets[:, :-1]], 1)  # shifted right
    decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids < 0, model.config.pad_token_id)
    logits = model(input_ids=ids, attention_mask=attn, decoder_input_ids=decoder_input_ids).logits
    return logits[:, prefix.shape[1]:][valid]  # (M, V): the positions predicting the pieces
