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


# ------------------------------------------------------------------- every ending, line by line


def ends(main, capsys):
    """(exit status or None, stdout, stderr) of `run_cli(main)`."""
    try:
        run_cli(main, [])
        status = None
    except SystemExit as done:
        status = done.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def started(out, then):
    def main(argv):
        track_output_dir(out, created=out)
        out.mkdir()
        (out / "partial.json").write_text("{}")
        then(out)
    return main


def fail(error):
    def then(out):
        raise error
    return then


def test_a_user_error_is_one_line_with_the_cleanup_note_and_the_script_variable(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert ends(started(out, fail(UserError("--learning_rate 0: must be > 0"))), capsys) == (
        2, "", f"error: --learning_rate 0: must be > 0 (removed {out}, which this run had created)\n")
    monkeypatch.setenv("ALSACE_SCRIPT", "run_script/finetuning.sh")
    monkeypatch.setenv("ALSACE_SCRIPT_VARIABLES", "learning_rate=LR seed=SEED")
    assert ends(started(out, fail(UserError("--learning_rate 0: must be > 0"))), capsys)[2] == (
        "error: --learning_rate 0: must be > 0 (set by LR= in run_script/finetuning.sh) "
        f"(removed {out}, which this run had created)\n")


def test_a_finished_run_says_so_on_stdout_and_exits_0(tmp_path, capsys):
    assert ends(fail(RunComplete(f"{tmp_path} holds a finished run")), capsys) == (
        0, f"{tmp_path} holds a finished run\n", "")


def test_ctrl_c_and_sigterm_say_what_is_kept_and_exit_130_and_143(tmp_path, capsys):
    from alsace.errors import Terminated
    from alsace.run_dir import RunStages

    out = tmp_path / "run"

    def interrupted_after_a_stage(out):
        RunStages(out, {"a": 1}).mark("baseline")
        raise KeyboardInterrupt()

    assert ends(started(out, interrupted_after_a_stage), capsys) == (
        130, "", f"interrupted; rerun the same command to continue ({out} is kept with its completed baseline, "
                 "which the rerun reuses)\n")
    assert ends(started(tmp_path / "t", fail(Terminated())), capsys) == (
        143, "", f"terminated (SIGTERM) (removed {tmp_path / 't'}, which this run had created)\n")
    assert ends(started(tmp_path / "i", fail(Interrupted("stopped during evaluation", 143))), capsys) == (
        143, "", f"stopped during evaluation (removed {tmp_path / 'i'}, which this run had created)\n")


def test_any_other_failure_keeps_its_traceback_and_says_what_was_removed(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="boom"):
        run_cli(started(out, fail(ValueError("boom"))), [])
    assert capsys.readouterr().err == f"error: ValueError (removed {out}, which this run had created)\n"
    with pytest.raises(ValueError):
        run_cli(lambda argv: (_ for _ in ()).throw(ValueError("no run dir")), [])
    assert capsys.readouterr().err == ""  # nothing was tracked: nothing to say
    with pytest.raises(SystemExit) as exited:
        run_cli(started(tmp_path / "exit", fail(SystemExit(3))), [])
    assert exited.value.code == 3 and capsys.readouterr().err == "" and (tmp_path / "exit").is_dir()


def test_the_note_of_a_decorated_main_is_the_one_printed(tmp_path, capsys):
    from alsace.run_dir import restores_output_dir

    out = tmp_path / "run"
    decorated = restores_output_dir(started(out, fail(UserError("bad"))))
    assert ends(decorated, capsys) == (2, "", f"error: bad (removed {out}, which this run had created)\n")
    with pytest.raises(UserError) as caught:  # in-process callers get the same cleanup and the note on the error
        decorated([])
    assert caught.value.restore_note == f" (removed {out}, which this run had created)" and not out.exists()
    with pytest.raises(KeyboardInterrupt) as stopped:
        restores_output_dir(started(out, fail(KeyboardInterrupt())))([])
    assert stopped.value.restore_note == f" (removed {out}, which this run had created)"
    with pytest.raises(RunComplete) as complete:
        restores_output_dir(started(out, fail(RunComplete("done"))))([])
    assert not hasattr(complete.value, "restore_note") and out.is_dir()  # a finished run is not touched


def test_sigterm_is_turned_into_an_exception_only_while_the_entry_point_runs(tmp_path, capsys):
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert ends(started(tmp_path / "run", lambda out: os.kill(os.getpid(), signal.SIGTERM)), capsys) == (
        143, "", f"terminated (SIGTERM) (removed {tmp_path / 'run'}, which this run had created)\n")
    assert signal.getsignal(signal.SIGTERM) == before


def test_no_done_line_without_a_run_directory_of_this_invocation(tmp_path, capsys):
    import alsace.run_dir as run_dir

    stale = tmp_path / "earlier"
    stale.mkdir()
    run_dir._run.update(output_dir=stale, created=None, before=frozenset())  # left by an earlier in-process run
    assert ends(lambda argv: None, capsys) == (None, "", "")
    gone = tmp_path / "gone"
    assert ends(lambda argv: track_output_dir(gone, created=gone), capsys) == (None, "", "")  # never created


def test_the_arguments_reach_the_entry_point_and_a_terminal_gets_a_fresh_line(tmp_path, capsys, monkeypatch):
    import sys

    seen = []
    run_cli(lambda argv: seen.append(argv), ["--seed", "3"])
    assert seen == [["--seed", "3"]]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # below a progress bar cut off mid-line
    assert ends(started(tmp_path / "run", fail(KeyboardInterrupt())), capsys)[2] == (
        f"\ninterrupted (removed {tmp_path / 'run'}, which this run had created)\n")


def test_a_failure_after_a_completed_stage_is_undone_unless_it_is_an_interruption(tmp_path, capsys):
    from alsace.run_dir import RunStages, restores_output_dir

    def stage_then(error):
        def then(out):
            RunStages(out, {"a": 1}).mark("baseline")
            raise error
        return then

    out = tmp_path / "run"
    assert ends(started(out, stage_then(UserError("bad"))), capsys) == (
        2, "", f"error: bad (removed {out}, which this run had created)\n")  # an error keeps no stage
    for error, line in ((KeyboardInterrupt(), f"interrupted (removed {out}, which this run had created)\n"),
                        (ValueError("x"), f"error: ValueError (removed {out}, which this run had created)\n")):
        decorated = restores_output_dir(started(out, fail(error)))  # the decorator's note is the one printed
        with pytest.raises((SystemExit, ValueError)):
            run_cli(decorated, [])
        assert capsys.readouterr().err == line
