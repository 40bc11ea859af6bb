"""`--help` says what the entry point does, then lists our flags by concern before the stock ones."""

import pytest

import aggregate
import benchmark
import convert_geomlama
import distill
import finetune
import plot
import predict
import prepare_data


@pytest.mark.parametrize("entry, groups", [
    (finetune, ["model:", "data and evaluation:", "prompt:", "fine-tuning:", "training (the stock"]),
    (distill, ["model:", "data and evaluation:", "prompt:", "teacher selection and self-distillation:",
               "training (the stock"]),
    (predict, []), (plot, []), (convert_geomlama, []), (aggregate, []), (prepare_data, []), (benchmark, []),
])
def test_help_starts_with_the_description_and_groups_our_flags_first(entry, groups, capsys):
    with pytest.raises(SystemExit) as stop:
        entry.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("usage: ") and len(lines[0]) < 100  # one short line, not every flag
    assert lines[2] == entry.__doc__.splitlines()[0]  # then what the entry point does
    if entry in (finetune, distill):
        assert "--data_dir data \\" in text  # the example command keeps its line breaks
    headings = [line for line in lines if line.endswith(":") and not line.startswith(" ")]
    positions = [next(i for i, h in enumerate(headings) if h.startswith(g)) for g in groups]
    assert positions == sorted(positions) and (not groups or headings[-1].startswith("training (the stock"))
