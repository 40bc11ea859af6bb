"""Tiny models built from a config, with a tokenizer trained locally: for tests and the offline demo.

Nothing here is downloaded. `build_tiny_model` trains a tokenizer on the given corpus (Unigram,
SentencePiece-style, for XLM-R / mDeBERTa-v3 / mT5 shapes; WordPiece for mBERT), builds a randomly
initialised model of the requested family and saves both with `save_pretrained` (safetensors), so every
entry point can load the directory exactly as it would load a Hub checkpoint.

Families and what they mimic: `xlm-roberta` (XLM-R: `<s>`/`<mask>`), `bert` (mBERT: `[CLS]`/`[MASK]`,
token type ids), `deberta-v2` (mDeBERTa-v3: SentencePiece with `[MASK]`, the non-legacy MLM head,
relative attention), `t5` (mT5: no mask token, `<extra_id_k>` sentinels, untied LM head).
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_XLMR = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
SPECIAL_BERT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPECIAL_T5 = ["<pad>", "</s>", "<unk>"]
T5_SENTINELS = [f"<extra_id_{i}>" for i in range(3)]  # mT5 has 100; the tests need the first
FAMILIES = ("xlm-roberta", "bert", "deberta-v2", "t5")


def train_tokenizer(corpus: list[str], vocab_size: int, family: str = "xlm-roberta", algorithm: str = "unigram"):
    """A fast tokenizer trained on `corpus`, wrapped as a transformers tokenizer.

    `algorithm` (xlm-roberta / t5 families): "unigram", SentencePiece-style like the real models, or
    "bpe", whose merges keep every frequent word whole; on a corpus of a few hundred distinct words
    Unigram training splits even the most frequent words into pieces.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if family == "bert":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_BERT,
                                                                 show_progress=False))
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        # Like mBERT's tokenizer, it returns token type ids (segment B of a pair is 1).
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]",
                                       model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    if algorithm not in ("unigram", "bpe"):
        raise ValueError(f"unknown tokenizer algorithm {algorithm!r}")
    specials = {"t5": SPECIAL_T5 + T5_SENTINELS, "deberta-v2": SPECIAL_BERT}.get(family, SPECIAL_XLMR)
    unk = "[UNK]" if family == "deberta-v2" else "<unk>"
    if algorithm == "bpe":
        tok = Tokenizer(models.BPE(unk_token=unk))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    else:
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=unk,
                                          show_progress=False)  # its bar prints blank lines off a terminal
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus, trainer)
    if family == "t5":
        eos = tok.token_to_id("</s>")
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", eos)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                       additional_special_tokens=T5_SENTINELS)
    if family == "deberta-v2":
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]")
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    # Like XLM-R's, the mask token swallows the space before it.
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>",
                                   mask_token=AddedToken("<mask>", lstrip=True, special=True))


def build_tiny_model(out_dir: str | Path, corpus: list[str], family: str = "xlm-roberta", vocab_size: int = 400,
                     hidden_size: int = 32, num_layers: int = 2, num_heads: int = 2, max_positions: int = 256,
                     seed: int = 0, tokenizer_algorithm: str = "unigram") -> Path:
    """Train a tokenizer, build a random model of `family` (see `FAMILIES`), save both."""
    import torch
    from transformers import (BertConfig, BertForMaskedLM, DebertaV2Config, DebertaV2ForMaskedLM, T5Config,
                              T5ForConditionalGeneration, XLMRobertaConfig, XLMRobertaForMaskedLM)

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(corpus, vocab_size, family, tokenizer_algorithm)
    size = dict(hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
                intermediate_size=4 * hidden_size)
    if family == "xlm-roberta":
        config = XLMRobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=max_positions + 2,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, **size)
        model = XLMRobertaForMaskedLM(config)
    elif family == "bert":
        config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=max_positions,
                            pad_token_id=tokenizer.pad_token_id, **size)
        model = BertForMaskedLM(config)
    elif family == "deberta-v2":
        # mDeBERTa-v3's shape: relative attention, no absolute positions or token types, non-legacy head.
        config = DebertaV2Config(vocab_size=len(tokenizer), max_position_embeddings=max_positions,
                                 pad_token_id=tokenizer.pad_token_id, relative_attention=True, position_buckets=16,
                                 pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0,
                                 norm_rel_ebd="layer_norm", share_att_key=True, legacy=False, **size)
        model = DebertaV2ForMaskedLM(config)
    elif family == "t5":
        config = T5Config(vocab_size=len(tokenizer), d_model=hidden_size, d_kv=hidden_size // num_heads,
                          d_ff=4 * hidden_size, num_layers=num_layers, num_heads=num_heads,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
        model = T5ForConditionalGeneration(config)
    else:
        raise ValueError(f"unknown family {family!r}")
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
