"""Data parallelism helpers: which rank this is, whether it shows progress bars, rank 0's answer on every rank.

Without `torch.distributed` initialised every helper answers as the only process. `torch` is imported
inside the functions, so that the light tools (aggregation, reports) do not load it.
"""

from __future__ import annotations


def _initialised() -> bool:
    import torch

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_main_process() -> bool:
    import torch

    return not _initialised() or torch.distributed.get_rank() == 0


def rank_and_world() -> tuple[int, int]:
    """`(rank, world_size)`; `(0, 1)` when not distributed."""
    import torch

    if _initialised():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def broadcast_from_main(obj):
    """`obj` as rank 0 has it, on every rank (itself when not distributed)."""
    import torch

    if not _initialised():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def show_progress() -> bool:
    """Progress bars on rank 0 of an interactive terminal only (they would flood a log file)."""
    import sys

    return is_main_process() and sys.stderr.isatty()
