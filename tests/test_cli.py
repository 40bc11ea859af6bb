"""How every entry point ends (`alsace.run_dir.run_cli`): where the results are, exit statuses, cleanup."""

from __future__ import annotations

import pytest

from alsace.errors import Interrupted, RunComplete, UserError
from alsace.run_dir import run_cli, track_output_dir


def finished_run(out):
    def main(argv):
        track_output_dir(out, created=out)
        out.mkdir()
        for name in ("results.md", "results.json", "comparison.md", "per_language_accuracy.png"):
            (out / name).write_text("x")
    return main


def test_a_finished_run_ends_by_saying_where_its_results_are(tmp_path, capsys):
    run_cli(finished_run(tmp_path / "run"), [])
    assert capsys.readouterr().out.strip() == (f"done: results in {tmp_path / 'run'}/: results.md, comparison.md, "
                                               "results.json; plots: per_language_accuracy.png")


@pytest.mark.parametrize("error, status", [(UserError("bad flag"), 2), (Interrupted("interrupted at step 3; ..."), 130),
                                           (KeyboardInterrupt(), 130), (RunComplete("finished"), 0)])
def test_exit_status_and_a_failed_start_removes_the_directory_it_created(tmp_path, capsys, error, status):
    out = tmp_path / "run"

    def main(argv):
        track_output_dir(out, created=out)
        out.mkdir()
        (out / "baseline").mkdir()  # written before the failure, but no checkpoint or model yet
        raise error

    with pytest.raises(SystemExit) as caught:
        run_cli(main, [])
    assert caught.value.code == status
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert out.exists() == (status == 0)  # RunComplete: the finished run is of course kept


def test_a_failure_after_the_first_checkpoint_keeps_the_directory(tmp_path, capsys):
    out = tmp_path / "run"

    def main(argv):
        track_output_dir(out, created=out)
        (out / "checkpoint-3").mkdir(parents=True)
        (out / "checkpoint-3" / "trainer_state.json").write_text('{"global_step": 3}')  # complete
        raise Interrupted("interrupted at step 4; rerun the same command to resume from checkpoint-3")

    with pytest.raises(SystemExit):
        run_cli(main, [])
    assert (out / "checkpoint-3").is_dir()
    assert capsys.readouterr().err.strip() == "interrupted at step 4; rerun the same command to resume from checkpoint-3"
