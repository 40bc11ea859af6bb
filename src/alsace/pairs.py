"""Cross-lingual self-distillation data: which language pairs to train on, the pair dataset and its batches."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch.utils.data import Dataset

from alsace.features import Batch, BatchKind, Collator


def build_pairs(ranking: list[str], teachers: list[str], students: list[str]) -> list[tuple[str, str]]:
    """Every teacher-teacher and teacher-student pair, never student-student.

    `ranking` orders all languages best first; in each pair the higher-ranked language comes first.
    The order is deterministic: pairs sorted by the rank of their first, then second, language.
    7 teachers and 8 students give C(7, 2) + 7 * 8 = 21 + 56 = 77 pairs.
    """
    rank = {lang: i for i, lang in enumerate(ranking)}
    teacher_set = set(teachers)
    pairs = [
        (a, b) for a, b in itertools.combinations(sorted(teachers + students, key=rank.__getitem__), 2)
        if a in teacher_set or b in teacher_set
    ]
    return pairs


def all_pairs(languages: list[str]) -> list[tuple[str, str]]:
    """All 2-combinations of an explicit language list, in the order given."""
    return list(itertools.combinations(languages, 2))


RECOMMENDED_PASSES = 3.69  # RECIPE=recommended's POOL_PASSES: 332 steps on 28 languages x 257 items, 750 on 71 x 229 (measured)


def pool_passes(steps: int, pairs_per_step: int, num_languages: int, num_items: int) -> float:
    """How often, on average, each language's pool items are seen in `steps` optimizer steps: every pair
    holds two languages' copies of one item, so `steps * pairs_per_step * 2 / (num_languages * num_items)`.
    The pairs count grows with the square of the languages, so a fixed number of steps trains each language
    less the more languages there are."""
    return steps * pairs_per_step * 2 / (num_languages * num_items)


def steps_for_passes(passes: float, pairs_per_step: int, num_languages: int, num_items: int) -> int:
    """The smallest number of steps giving at least `passes` (the inverse of `pool_passes`)."""
    return math.ceil(passes * num_languages * num_items / (2 * pairs_per_step))


class PairDataset(Dataset):
    """Training examples `(x_a,i, x_b,i)` for every pair (a, b) and every pool item i.

    Holds only indices into the tokenised pool (77 pairs x 500 items would otherwise copy every
    sequence 14 times); the order is shuffled once with `seed`, and the Trainer's sampler reshuffles
    each epoch. Pool features carry no labels: the consistency loss never reads a gold label.

    This project's extensions (off in the paper's recipe):
    - `teacher_logits` `{lang: (N, C)}`: a frozen teacher. Side a is then not fed to the model; its class
      logits (the starting checkpoint's, computed once on the pool) come with the example instead.
    - `anchor_features`: labelled source-language training rows; example k also carries anchor row
      k mod len(anchor_features) (in a seeded order) for the supervised anchor loss.
    - `anchor_logits` `(len(anchor_features), C)`: the anchor rows' targets instead of their labels
      (`--anchor_target self`: the source language's pool items and the starting checkpoint's logits on them).
    - `source_features` `(N, layers, H)`: the starting checkpoint's pooled hidden states on each pool item in
      the source language (`--source_alignment_weight`); example (a, b, i) carries row i.
    """

    def __init__(self, pool_features: dict[str, list[dict]], pairs: list[tuple[str, str]], seed: int,
                 teacher_logits: dict[str, np.ndarray] | None = None, anchor_features: list[dict] | None = None,
                 anchor_logits: np.ndarray | None = None, source_features: np.ndarray | None = None):
        if anchor_logits is not None and (not anchor_features or len(anchor_logits) != len(anchor_features)):
            raise ValueError("anchor_logits needs one row per anchor feature")
        num_items = len(next(iter(pool_features.values())))
        if source_features is not None and len(source_features) != num_items:
            raise ValueError(f"source_features has {len(source_features)} rows for {num_items} pool items")
        self.source_features = source_features
        self.pool_features = pool_features
        self.anchor_logits = anchor_logits
        self.teacher_logits = teacher_logits
        self.anchor_features = anchor_features
        index = [(a, b, i) for a, b in pairs for i in range(num_items)]
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(index))
        self.index = [index[j] for j in perm]
        self.anchor_order = rng.permutation(len(anchor_features)).tolist() if anchor_features else None

    @property
    def frozen_teacher(self) -> bool:
        """Whether the teacher sides are fixed logits (`--frozen_teacher`) rather than inputs to the model."""
        return self.teacher_logits is not None

    def collator(self, pad_token_id: int) -> PairCollator:
        """The collator of this dataset's examples (frozen teacher or not, anchor rows or not)."""
        return PairCollator(pad_token_id, frozen_teacher=self.frozen_teacher, anchors=bool(self.anchor_features),
                            anchor_targets=self.anchor_logits is not None,
                            source_features=self.source_features is not None)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict:
        a, b, i = self.index[k]
        strip = lambda f: {key: v for key, v in f.items() if key != "labels"}  # noqa: E731
        example = {"b": strip(self.pool_features[b][i])}
        if self.teacher_logits is None:
            example["a"] = strip(self.pool_features[a][i])
        else:
            example["teacher_logits"] = self.teacher_logits[a][i].tolist()
        if self.anchor_features:
            j = self.anchor_order[k % len(self.anchor_order)]
            example["anchor"] = self.anchor_features[j]
            if self.anchor_logits is not None:  # unlabeled anchor rows with fixed targets
                example["anchor"] = strip(example["anchor"])
                example["anchor_logits"] = self.anchor_logits[j].tolist()
        if self.source_features is not None:
            example["source_features"] = self.source_features[i]
        return example


# What a pair batch carries beside the sides' model inputs (never fed to the model).
PAIR_KEYS = ("num_pairs", "teacher_logits", "anchor", "anchor_logits", "source_features")


class PairBatch(Batch):
    """B pairs, both sides stacked into one `(2B, ...)` batch, the B higher-ranked sides first, so that both
    go through the model in a single forward pass; `num_pairs` = B, and `anchor` (anchor rows), `anchor_logits`
    (their targets) and `source_features` (the items' source-language features) when given."""

    kind = BatchKind.PAIRS


class FrozenPairBatch(PairBatch):
    """B pairs with a frozen teacher: the B student sides `(B, ...)` plus `teacher_logits` `(B, C)`."""

    kind = BatchKind.FROZEN_PAIRS


class PairCollator:
    """Collates `PairDataset` examples into a `PairBatch` (or a `FrozenPairBatch` with `frozen_teacher`).

    The sides are padded together by the plain `Collator`; anchor rows (`anchors`) become a nested plain batch
    `anchor`, their target logits (`anchor_targets`) `anchor_logits` `(B, C)`, and the items' source-language
    features (`source_features`) `source_features` `(B, layers, H)`.
    """

    def __init__(self, pad_token_id: int, frozen_teacher: bool = False, anchors: bool = False,
                 anchor_targets: bool = False, source_features: bool = False):
        self.collate = Collator(pad_token_id)
        self.frozen_teacher = frozen_teacher
        self.anchors = anchors
        self.anchor_targets = anchor_targets
        self.source_features = source_features

    def __call__(self, features: list[dict]) -> PairBatch:
        teachers = [] if self.frozen_teacher else [f["a"] for f in features]
        batch = (FrozenPairBatch if self.frozen_teacher else PairBatch)(
            self.collate(teachers + [f["b"] for f in features]))
        batch["num_pairs"] = torch.tensor(len(features))
        if self.frozen_teacher:
            batch["teacher_logits"] = torch.tensor([f["teacher_logits"] for f in features], dtype=torch.float32)
        if self.anchors:
            batch["anchor"] = self.collate([f["anchor"] for f in features])
        if self.anchor_targets:
            batch["anchor_logits"] = torch.tensor([f["anchor_logits"] for f in features], dtype=torch.float32)
        if self.source_features:
            batch["source_features"] = torch.from_numpy(np.stack([f["source_features"] for f in features])).float()
        return batch
