"""Prompt rendering and tokenisation that never cuts the template or the mask.

A template is a string with `{name}` slots: the task's text fields, `{placeholders}` (the original's
run of `歌` tokens) and `{mask}`. Everything else is literal text, copied exactly (the original's odd
spacing included). Rendering yields the string and the character span of every field, so that an
input longer than `max_length` is shortened *inside* the fields (longest field first), and the
template, placeholders and mask always survive. The original tokenised with plain truncation at 512
and crashed when the mask fell off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alsace.errors import UserError

PLACEHOLDER_TOKEN = "歌"  # the original's leftover soft-prompt slot, kept as a literal token
_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    mask_pos: int  # index of the mask token in input_ids (-1 when the prompt has no mask)


def template_slots(template: str) -> list[str]:
    """Names of the `{slots}` of a template, in order."""
    return _SLOT.findall(template)


def render(template: str, texts: dict[str, str], mask: str, placeholders: str) -> tuple[str, dict]:
    """Fill a template. Returns the string and `{field: (start, end)}` character spans of the fields."""
    pieces, spans, pos, cursor = [], {}, 0, 0
    for match in _SLOT.finditer(template):
        literal = template[cursor : match.start()]
        pieces.append(literal)
        pos += len(literal)
        name = match.group(1)
        if name == "mask":
            value = mask
        elif name == "placeholders":
            value = placeholders
        else:
            value = texts[name]
            spans[name] = (pos, pos + len(value))
        pieces.append(value)
        pos += len(value)
        cursor = match.end()
    pieces.append(template[cursor:])
    return "".join(pieces), spans


def encode_prompt(
    tokenizer,
    template: str,
    texts: dict[str, str],
    max_length: int,
    num_placeholder_tokens: int,
    use_mask: bool = True,
    mask_token: str | None = None,
) -> Encoded:
    """Tokenise one prompted example, shortening only the text fields when it is too long.

    When the rendered prompt fits, the ids are exactly `tokenizer(rendered)` (faithful). Otherwise the
    fields are cut at token boundaries, longest first, and the prompt is re-rendered and re-tokenised
    until it fits (a cut can shift a boundary by a piece, hence the loop). `{mask}` becomes the
    tokenizer's mask token, `mask_token` when given (e.g. T5's `<extra_id_0>`), or nothing without
    `use_mask` (seq2seq classification prompts).
    """
    mask = (mask_token or tokenizer.mask_token) if use_mask else ""
    placeholders = PLACEHOLDER_TOKEN * num_placeholder_tokens
    texts = dict(texts)
    for _ in range(8):
        rendered, spans = render(template, texts, mask, placeholders)
        enc = tokenizer(rendered, add_special_tokens=True, return_offsets_mapping=True)
        ids = enc["input_ids"]
        excess = len(ids) - max_length
        if excess <= 0:
            break
        # Count the tokens of each field from the offsets, then drop `excess` tokens, longest field first.
        counts = {
            name: sum(1 for s, e in enc["offset_mapping"] if e > s and s >= start and e <= end)
            for name, (start, end) in spans.items()
        }
        if sum(counts.values()) == 0:
            raise UserError(
                f"--max_seq_length {max_length} is shorter than the prompt template itself "
                f"({len(ids)} tokens with empty text): raise --max_seq_length"
            )
        drop = dict.fromkeys(counts, 0)
        for _ in range(excess):
            longest = max(counts, key=lambda n: counts[n] - drop[n])
            if counts[longest] - drop[longest] == 0:
                break
            drop[longest] += 1
        for name, n_drop in drop.items():
            if n_drop:
                texts[name] = _keep_tokens(tokenizer, texts[name], counts[name] - n_drop)
    else:
        raise UserError(f"could not fit an example into --max_seq_length {max_length}: raise it")
    mask_pos = ids.index(tokenizer.convert_tokens_to_ids(mask)) if use_mask else -1
    return Encoded(input_ids=ids, mask_pos=mask_pos)


def _keep_tokens(tokenizer, text: str, n_keep: int) -> str:
    """The prefix of `text` covering its first `n_keep` tokens (tokenised on its own)."""
    if n_keep <= 0:
        return ""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    offsets = [(s, e) for s, e in offsets if e > s]
    if n_keep >= len(offsets):
        # The field tokenises into fewer pieces alone than in context: drop one more character.
        return text[: max(0, len(text) - 1)]
    return text[: offsets[n_keep - 1][1]]


def word_pieces(tokenizer, word: str) -> list[int]:
    """Sub-token ids of `word` tokenised on its own, without a leading bare word-boundary piece.

    A bare boundary piece (SentencePiece's `▁`, byte-BPE's `Ġ`) at the start carries no information about
    the word (XLM-R splits many CJK words into `▁` + the word), so it is dropped; one inside a multi-word
    answer marks a real word boundary and stays. Special tokens are never added.
    """
    pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(pieces)
    start = 0
    while start < len(tokens) and tokens[start] in ("▁", "Ġ", ""):
        start += 1
    return pieces[start:]


def label_word_ids(tokenizer, words, context: str) -> list[int]:
    """First sub-token id of each label word (see `word_pieces`); refuse when two labels share it."""
    ids = []
    for word in words:
        kept = word_pieces(tokenizer, word)
        if not kept:
            raise UserError(f"{context}: label word {word!r} has no sub-token in this tokenizer")
        if kept[0] == tokenizer.unk_token_id:
            raise UserError(f"{context}: label word {word!r} is unknown to this tokenizer; choose another word")
        ids.append(kept[0])
    if len(set(ids)) != len(ids):
        shown = ", ".join(f"{w!r}->{tokenizer.convert_ids_to_tokens(i)}" for w, i in zip(words, ids))
        raise UserError(
            f"{context}: two label words share their first sub-token ({shown}); "
            "choose label words that start differently"
        )
    return ids
