"""Legible runs: one console line per pipeline component, library noise in a log file.

TFX's LocalDagRunner runs the components one after another and says so in its log ("Component
%s is running." / "is finished." / "Skipping component %s."; the launcher adds "A cached execution
%d is used." when the cache answers). `ComponentProgress` turns those records into one line per
component (name, state, seconds); `quiet_run` sends everything else, including what Beam's
worker processes and TensorFlow's C++ runtime write straight to the stderr file descriptor, to
a log file. The Trainer's own progress (models/trainer.py logs it on the `funnel.progress`
logger) is shown too.

Hand-written: TFX has no progress callback for LocalDagRunner, only these log lines.
"""

import contextlib
import logging
import os
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

RUNNING, FINISHED, SKIPPED, CACHED = "Component %s is running.", "Component %s is finished.", \
    "Skipping component %s.", "A cached execution %d is used."
FAILED = "Execution %d failed."  # the launcher's, when a step raises (e.g. the data gate stopping the run)


class UnwritableLogError(ValueError):
    """The log file of `quiet_run` cannot be created (its directory is a file, or not ours)."""


# Warnings held by `held_warnings` until the next `quiet_run` writes them to its log file.
_HELD: List[warnings.WarningMessage] = []


class ComponentProgress(logging.Handler):
    """Prints `  NAME  STATE  SECONDS` when a component finishes (state: done, cached, failed or
    skipped), and the messages of the `funnel.progress` logger indented below a `NAME running`
    line of the step they come from."""

    def __init__(self, out: Optional[TextIO] = None, clock: Callable[[], float] = time.monotonic):
        super().__init__(logging.INFO)
        self.out = out
        self.clock = clock
        self.started: Dict[str, float] = {}
        self.cached: Dict[str, bool] = {}
        self.current: Optional[str] = None
        self.announced = set()
        self.lines = 0
        from models.progress import PROGRESS_LOGGER  # imports TensorFlow: only once a run is quiet

        self.progress_logger = PROGRESS_LOGGER  # records on it are shown as they are

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)
        self.lines += 1

    def _finished(self, name: str, state: str) -> None:
        now = self.clock()
        self._print(f"  {name:<30} {state:<8} {now - self.started.get(name, now):8.1f} s")
        self.current = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name == self.progress_logger:
                if self.current and self.current not in self.announced:  # progress inside a step: name it first
                    self.announced.add(self.current)
                    self._print(f"  {self.current:<30} running")
                self._print(f"    {record.getMessage()}")
                return
            args = record.args if isinstance(record.args, tuple) else ()
            if record.msg == RUNNING and args:
                self.current = str(args[0])
                self.started[self.current] = self.clock()
                self.cached[self.current] = False
            elif record.msg == CACHED and self.current:
                self.cached[self.current] = True
            elif record.msg == FINISHED and args:
                name = str(args[0])
                self._finished(name, "cached" if self.cached.get(name) else "done")
            elif record.msg == FAILED and self.current:
                self._finished(self.current, "failed")
            elif record.msg == SKIPPED and args:
                self._print(f"  {str(args[0]):<30} {'skipped':<8}")
        except Exception:  # a console line must never break a run
            self.handleError(record)


@contextlib.contextmanager
def held_warnings():
    """Warnings raised in the block are not shown now; the next `quiet_run` writes them to its log
    file. For what a command imports before its run starts, to check its arguments: importing
    TFX and Beam warns a dozen times (google-api-core on Python 3.10, which TFX 1.16 needs), and
    the console should start with funnel's own line. A command that stops before `quiet_run`
    (its arguments refused) prints its error and drops them. File descriptor 2 is left alone
    (TensorFlow's C++ runtime may still log at import): a library crashing at import must stay
    on the console."""
    with warnings.catch_warnings(record=True) as caught:  # the filters in force still apply
        try:
            yield
        finally:
            _HELD.extend(caught)


@contextlib.contextmanager
def quiet_run(log_path: str, verbose: bool = False):
    """Within the block: Python logging (absl, TFX, Beam, TensorFlow) and warnings go to
    `log_path`, and so does anything written to file descriptor 2 (subprocesses inherit it);
    the console shows funnel's prints and a ComponentProgress line per component. With
    `verbose`, library messages stay on the console as well. Warnings held by
    `held_warnings` are written first. Yields the ComponentProgress."""
    try:  # before anything is redirected: the command's output directory is unusable
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        log_file = open(log_path, "a")
    except OSError as e:
        raise UnwritableLogError(f"cannot write {log_path}: {why_unwritable(log_path, e)}") from e
    root = logging.getLogger()
    library_loggers = [logging.getLogger(name) for name in ("tensorflow", "apache_beam", "absl")]
    saved = (list(root.handlers), root.level, {lg: (lg.level, list(lg.handlers), lg.propagate) for lg in library_loggers})
    handler = logging.StreamHandler(sys.stderr if verbose else log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    stderr_fd = None
    if not verbose:
        sys.stderr.flush()
        stderr_fd = os.dup(2)
        os.dup2(log_file.fileno(), 2)
    try:
        progress = ComponentProgress()
        for existing in list(root.handlers):
            root.removeHandler(existing)
        root.addHandler(handler)
        root.addHandler(progress)
        root.setLevel(logging.INFO)
        for logger in library_loggers:  # they may carry their own console handler
            for existing in list(logger.handlers):
                logger.removeHandler(existing)
            logger.propagate = True
        absl_logger = library_loggers[-1]
        absl_logger.setLevel(logging.INFO)  # the runner's "Component ... is running." lines
        # A library that parses absl's flags mid-run (it happens during the Trainer) resets the
        # absl logger to --verbosity's default, WARNING, which would silence those lines: pinned.
        absl_logger.setLevel = lambda level: None
        logging.captureWarnings(True)
        while _HELD:
            held = _HELD.pop(0)
            warnings.showwarning(held.message, held.category, held.filename, held.lineno)
        try:
            yield progress
        except BaseException:
            logging.getLogger("funnel").exception("the run failed")
            raise
    finally:
        if stderr_fd is not None:
            sys.stderr.flush()
            os.dup2(stderr_fd, 2)
            os.close(stderr_fd)
        logging.captureWarnings(False)
        for existing in list(root.handlers):
            root.removeHandler(existing)
        for existing in saved[0]:
            root.addHandler(existing)
        root.setLevel(saved[1])
        for logger, (level, handlers, propagate) in saved[2].items():
            logger.__dict__.pop("setLevel", None)  # the pin above
            logger.setLevel(level)
            for existing in handlers:
                logger.addHandler(existing)
            logger.propagate = propagate
        handler.close()
        log_file.close()


def why_unwritable(path: str, error: OSError) -> str:
    """"/x is a file, not a directory" when an ancestor of `path` is one (os says "File exists"
    or "Not a directory", naming neither), else the OS's reason."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    if os.path.exists(parent) and not os.path.isdir(parent):
        return f"{parent} is a file, not a directory"
    return error.strerror or str(error)


def command_log(directory: str, command: str) -> str:
    """Where a command's library messages go: DIRECTORY/funnel-COMMAND.log beside its output, or
    in the temporary directory when the output is on cloud storage (the log is a local file)."""
    from pipeline import paths

    local = directory if paths.is_local(directory) else tempfile.gettempdir()
    return os.path.join(os.path.abspath(local or "."), f"funnel-{command}.log")


def run_quietly(command: str, log_path: str, work: Callable[[], Any], errors: Tuple[type, ...]):
    """`work()` with Beam's, TFX's and TensorFlow's messages (its worker processes' too) in
    `log_path`: (its result, None), or (None, the error to print once the console is back) for
    one of `errors`."""
    print(f"funnel {command}: library messages go to {log_path}", flush=True)
    with quiet_run(log_path):
        try:
            return work(), None
        except errors as e:
            return None, str(e)
