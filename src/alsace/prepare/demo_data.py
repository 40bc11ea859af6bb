"""The offline demo's data: a seeded, row-parallel topic-classification task in made-up languages.

A synthetic illustration, not a benchmark. One base grammar writes every item once, as a sequence of
English words with a label (its topic); each language then spells the same words through its own
lexicon, so every split is row-parallel across languages, like XNLI. A made-up language keeps a
fixed share of the English words verbatim (loanwords: the very same sub-word tokens as English) and
re-spells the others letter by letter in a script of its own (no token in common with English); some
languages also order the sentence differently.

The mechanism behind the disparity is therefore known: a model fine-tuned on English can read a
made-up language only through the tokens it shares with English, so its accuracy falls with that
share. The unlabeled parallel pool lets self-distillation carry the teachers' predictions over to
the students' own words, which is what ALSACE relies on in real languages.

Files: `<data_dir>/demo/<split>/<lang>.jsonl` with `{"text", "label", "id"}` (English alone has a
train split: only English labels are ever used for training) and `<data_dir>/demo/task.json`, the
task described in the task-file format of docs/tasks.md.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path


NAME = "demo"
LABEL_NAMES = ("sports", "food", "music", "weather")
LABEL_WORDS = ("sport", "food", "music", "weather")  # verbalizer; none of them occurs in a sentence
TEMPLATE = "{text} Topic: {mask}."

# Words whose presence decides the label: nouns (objects) and verbs, per topic.
TOPIC_WORDS = {
    "sports": (("ball", "goal", "team", "match", "coach", "race", "player", "stadium", "medal", "league",
                "runner", "referee"),
               ("kicked", "scored", "trained", "raced", "defended", "tackled")),
    "food": (("bread", "soup", "cheese", "apple", "kitchen", "dinner", "salad", "rice", "cake", "pepper",
              "butter", "recipe"),
             ("cooked", "baked", "tasted", "fried", "peeled", "seasoned")),
    "music": (("song", "guitar", "piano", "concert", "band", "drum", "melody", "singer", "violin", "album",
               "choir", "rhythm"),
              ("sang", "strummed", "recorded", "composed", "tuned", "rehearsed")),
    "weather": (("rain", "storm", "cloud", "wind", "snow", "thunder", "fog", "sunshine", "frost", "forecast",
                 "breeze", "flood"),
                ("poured", "froze", "thawed", "drizzled", "flooded", "cleared")),
}
# Words that say nothing about the topic.
NEUTRAL_WORDS = {
    "det": ("the", "a", "this", "that", "every", "one"),
    "person": ("man", "woman", "child", "friend", "teacher", "neighbour", "student", "family", "doctor", "farmer"),
    "object": ("letter", "picture", "story", "book", "photo", "plan", "box", "door"),
    "verb": ("saw", "liked", "watched", "remembered", "described", "mentioned", "discussed", "noticed"),
    "adj": ("big", "small", "old", "new", "good", "strange", "long", "quiet", "famous", "little"),
    "prep": ("in", "near", "after", "behind", "outside"),
    "place": ("city", "town", "village", "park", "school", "house", "street", "market", "garden", "station"),
    "time": ("yesterday", "today", "tonight", "again", "often", "later", "soon", "early"),
}
CONNECTIVE = "and"
DISTRACTOR_RATE = 0.4  # share of two-topic-word sentences that also hold one word of another topic


@dataclass(frozen=True)
class DemoLanguage:
    """A made-up language: how much of English it keeps, its script and its word order."""

    code: str
    shared: float  # share of the vocabulary spelled exactly as in English
    script_start: int  # first code point of the letters that re-spell the other words (0: English)
    word_order: str = "svo"  # svo, sov or vso

    @property
    def is_english(self) -> bool:
        return self.script_start == 0


# English first (the training language), then less and less overlap. Scripts are disjoint blocks
# (Cyrillic, Armenian, Georgian, Thai), so a re-spelled word can share no piece with English or with
# another made-up language.
LANGUAGES = (
    DemoLanguage("en", 1.0, 0),
    DemoLanguage("x75", 0.75, 0x430, "svo"),
    DemoLanguage("x50", 0.50, 0x561, "sov"),
    DemoLanguage("x25", 0.25, 0x10D0, "svo"),
    DemoLanguage("x00", 0.00, 0x0E01, "vso"),
)


def vocabulary() -> list[str]:
    """Every word of the base grammar, in a fixed order."""
    words = [w for nouns, verbs in TOPIC_WORDS.values() for w in nouns + verbs]
    words += [w for group in NEUTRAL_WORDS.values() for w in group] + [CONNECTIVE]
    return words


def lexicon(language: DemoLanguage, seed: int) -> dict[str, str]:
    """English word -> its spelling in `language`.

    Exactly round(shared * n) words of each group (every topic's nouns and verbs, every neutral group)
    are kept verbatim, so that no topic is easier than another by chance; the rest are re-spelled with
    a seeded letter substitution into the language's script.
    """
    if language.is_english:
        return {w: w for w in vocabulary()}
    rng = random.Random(f"{seed}-{language.code}")
    letters = [chr(language.script_start + i) for i in range(26)]
    rng.shuffle(letters)
    cipher = dict(zip("abcdefghijklmnopqrstuvwxyz", letters))
    groups = [g for pair in TOPIC_WORDS.values() for g in pair] + list(NEUTRAL_WORDS.values()) + [(CONNECTIVE,)]
    out = {}
    for group in groups:
        kept = set(rng.sample(group, round(language.shared * len(group))))
        for word in group:
            out[word] = word if word in kept else "".join(cipher[c] for c in word)
    return out


@dataclass(frozen=True)
class Item:
    """One language-independent sentence: its parts as English words, and the topic index."""

    subject: tuple[str, ...]
    verb: str
    objects: tuple[tuple[str, ...], ...]  # one or two noun phrases
    place: tuple[str, ...]
    time: str | None
    label: int


def generate_item(rng: random.Random) -> Item:
    """One sentence whose topic words outnumber the words of any other topic.

    The topic shows in 1-3 slots (verb, first object, second object). When a slot is left over and the
    topic has at least two words, it may hold a distractor from another topic; the label is then
    still the majority, so a reader who sees only the distractor gets it wrong.
    """
    label = rng.randrange(len(LABEL_NAMES))
    slots = ["verb", "obj1", "obj2"]
    k = rng.choice((1, 2, 2, 3))
    topic_of = dict.fromkeys(rng.sample(slots, k), label)  # slot -> topic index of its word
    if k == 2 and rng.random() < DISTRACTOR_RATE:
        free = next(s for s in slots if s not in topic_of)
        topic_of[free] = rng.choice([t for t in range(len(LABEL_NAMES)) if t != label])

    def word(slot, part, neutral):  # part 0: nouns, 1: verbs
        if slot in topic_of:
            return rng.choice(TOPIC_WORDS[LABEL_NAMES[topic_of[slot]]][part])
        return rng.choice(NEUTRAL_WORDS[neutral])

    def noun_phrase(noun):
        adj = (rng.choice(NEUTRAL_WORDS["adj"]),) if rng.random() < 0.4 else ()
        return (rng.choice(NEUTRAL_WORDS["det"]), *adj, noun)

    verb = word("verb", 1, "verb")
    objects = [noun_phrase(word("obj1", 0, "object"))]
    if "obj2" in topic_of or rng.random() < 0.3:
        objects.append(noun_phrase(word("obj2", 0, "object")))
    subject = noun_phrase(rng.choice(NEUTRAL_WORDS["person"]))
    place = (rng.choice(NEUTRAL_WORDS["prep"]), rng.choice(NEUTRAL_WORDS["det"]), rng.choice(NEUTRAL_WORDS["place"]))
    time = rng.choice(NEUTRAL_WORDS["time"]) if rng.random() < 0.5 else None
    return Item(subject, verb, tuple(objects), place, time, label)


def realize(item: Item, language: DemoLanguage, words: dict[str, str]) -> str:
    """The item as a sentence of `language`, spelled with its lexicon `words`, in its word order."""
    obj = []
    for i, phrase in enumerate(item.objects):
        obj += ([CONNECTIVE] if i else []) + list(phrase)
    parts = {"s": list(item.subject), "v": [item.verb], "o": obj}
    sentence = [w for key in language.word_order for w in parts[key]] + list(item.place)
    sentence += [item.time] if item.time else []
    return " ".join(words[w] for w in sentence)


def generate_split(n: int, seed: int, split: str) -> list[Item]:
    rng = random.Random(f"{seed}-{split}")
    return [generate_item(rng) for _ in range(n)]


def task_file(languages: tuple[DemoLanguage, ...] = LANGUAGES) -> dict:
    """The same task in the task-file format of docs/tasks.md (data beside the file)."""
    return {"name": NAME, "languages": [lang.code for lang in languages], "text_fields": ["text"],
            "label_names": list(LABEL_NAMES), "data_dir": ".",
            "prompt": {"template": TEMPLATE, "label_words": list(LABEL_WORDS)}}


def write_demo_data(data_dir: str | Path, sizes: dict[str, int], seed: int = 0,
                    languages: tuple[DemoLanguage, ...] = LANGUAGES) -> Path:
    """Write `<data_dir>/demo/<split>/<lang>.jsonl` and `task.json`; returns the task folder.

    `sizes` maps split -> rows; the train split is written for English only.
    """
    from alsace.files import write_json, write_text

    root = Path(data_dir) / NAME
    lexicons = {lang.code: lexicon(lang, seed) for lang in languages}
    for split, n in sizes.items():
        items = generate_split(n, seed, split)
        for lang in languages:
            if split == "train" and not lang.is_english:
                continue
            lines = [json.dumps({"text": realize(item, lang, lexicons[lang.code]), "label": item.label,
                                 "id": f"{split}-{i}"}, ensure_ascii=False) for i, item in enumerate(items)]
            write_text(root / split / f"{lang.code}.jsonl", "\n".join(lines) + "\n")
    write_json(root / "task.json", task_file(languages))
    return root


def tokenizer_corpus(n_per_language: int, seed: int, languages: tuple[DemoLanguage, ...] = LANGUAGES) -> list[str]:
    """Unlabeled text in every language (its own seed, apart from every split) plus the prompt words.

    Stands in for a multilingual pretraining corpus: the tokenizer learns every language's pieces.
    """
    items = generate_split(n_per_language, seed, "corpus")
    lines = [realize(item, lang, lexicon(lang, seed)) for lang in languages for item in items]
    # The prompt and its answers, space-separated so that each label word is learnt as a whole piece.
    lines += [f"{TEMPLATE.split()[1]} {word} ." for word in LABEL_WORDS] * 50
    return lines


def script_name(language: DemoLanguage) -> str:
    import unicodedata

    return "Latin" if language.is_english else unicodedata.name(chr(language.script_start)).split()[0].title()


def token_overlap(model_dir: str | Path, task_dir: str | Path,
                  languages: tuple[DemoLanguage, ...] = LANGUAGES) -> dict[str, dict]:
    """Per language: its design and the measured share of its test tokens seen in English training text.

    The measured share is over token occurrences of the test sentences (no prompt, no special tokens):
    what a model fine-tuned on English has ever seen of that language.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    task_dir = Path(task_dir)

    def token_ids(split: str, code: str) -> list[int]:
        lines = (task_dir / split / f"{code}.jsonl").read_text("utf-8").splitlines()
        texts = [json.loads(line)["text"] for line in lines if line.strip()]
        return [i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in ids]

    english = set(token_ids("train", languages[0].code))
    out = {}
    for lang in languages:
        ids = token_ids("test", lang.code)
        out[lang.code] = {"shared_words": lang.shared, "script": script_name(lang), "word_order": lang.word_order,
                          "token_overlap": sum(i in english for i in ids) / len(ids)}
    return out
