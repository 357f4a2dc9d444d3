"""pipeline/child_process.py: one call in a fresh process."""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import child_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": ROOT}  # the scripts' and their children's imports find funnel


def _python(script, body: str):
    """The command running a script that imports child_process, then does `body`."""
    script.write_text("from pipeline import child_process\n" + body)
    return [sys.executable, str(script)]


def test_a_child_process_returns_its_result_and_raises_its_errors():
    assert child_process.in_child_process(os.getpid) != os.getpid()
    with pytest.raises(ValueError, match="invalid literal"):
        child_process.in_child_process(int, "not a number")


def test_a_child_processs_progress_lines_are_logged_here(caplog):
    """The training's progress (the `funnel.progress` logger) reaches this process's handlers:
    `funnel ablate`'s console shows it as it did when variants trained in process."""
    with caplog.at_level(logging.INFO, logger="funnel.progress"):
        child_process.in_child_process(logging.getLogger("funnel.progress").info, "dmt: epoch 1/2 done")
    assert [r.getMessage() for r in caplog.records if r.name == "funnel.progress"] == ["dmt: epoch 1/2 done"]


def _state(pid: int) -> str:
    """The process's state letter from /proc (Z: exited, not yet reaped), "" once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return ""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc (Linux)")
def test_a_child_whose_parent_is_killed_exits_instead_of_running_on(tmp_path):
    """`funnel ablate` killed mid-variant must not leave the variant's training running."""
    child_pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(_python(tmp_path / "parent.py",
                                      "import os, time\n"
                                      "def record_pid_and_wait(path):\n"
                                      "    with open(path + '.tmp', 'w') as f:\n"
                                      "        f.write(str(os.getpid()))\n"
                                      "    os.rename(path + '.tmp', path)\n"
                                      "    time.sleep(300)\n"
                                      "if __name__ == '__main__':\n"
                                      f"    child_process.in_child_process(record_pid_and_wait, {str(child_pid_file)!r})\n"),
                              env=ENV)
    child = None
    try:
        deadline = time.monotonic() + 120
        while not child_pid_file.exists():
            assert time.monotonic() < deadline and parent.poll() is None, "the child never started"
            time.sleep(0.2)
        child = int(child_pid_file.read_text())
        assert _state(child) not in ("", "Z")
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while _state(child) not in ("", "Z") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _state(child) in ("", "Z"), "the child ran on after its parent was killed"
    finally:
        parent.kill()
        if child is not None and _state(child) not in ("", "Z"):
            os.kill(child, signal.SIGKILL)


def test_a_child_that_dies_before_a_large_call_is_read_fails_the_parent(tmp_path):
    """A call bigger than a pipe's buffer (a variant's arguments carry the eval day's truth), and
    a child that dies as it starts (here: spawn re-runs an unguarded script, which exits in the
    child): the parent raises BrokenProcessPool. Through the executor's call queue it hung on
    Python 3.10 (CPython gh-94777)."""
    done = subprocess.run(_python(tmp_path / "dies_at_start.py",
                                  "import sys\n"
                                  "if child_process.in_a_child():\n"
                                  "    sys.exit('the child exits as it starts')\n"
                                  "print(child_process.in_child_process(len, 'x' * 1_000_000))\n"),
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode != 0 and "BrokenProcessPool" in done.stderr, done.stderr[-2000:]


def test_a_large_call_reaches_the_child():
    assert child_process.in_child_process(len, "x" * 1_000_000) == 1_000_000
