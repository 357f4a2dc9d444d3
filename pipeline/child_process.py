"""One call in a fresh child process, for `funnel ablate`'s variants (pipeline/ablate.py):
results and errors come back, the child's progress lines are logged in the parent."""

import concurrent.futures
import logging
import logging.handlers
import multiprocessing
import os
import pickle
import tempfile
import threading
import time


def in_child_process(fn, *args):
    """fn(*args) in a fresh Python process (multiprocessing's spawn start method); returns its
    result. An exception in the child is raised here (its traceback attached), a child that
    dies (e.g. killed for memory) raises BrokenProcessPool: neither goes unnoticed.

    Why a process per variant: TensorFlow keeps what each training and SavedModel load traced
    for the life of the process (functions registered in the eager context are not released
    by keras.backend.clear_session()), so training variant after variant in one process grew it
    to 14.8 GB after 15 DMT trainings (`--seeds 0,1,2` over 5 variants), into swap. The child
    inherits the environment and file descriptors (stderr, redirected to the library log by
    `funnel ablate`), and its `funnel` loggers' records (the training's progress lines) are
    handled by this process's loggers, as if logged here (the logging cookbook's queue pattern).
    Spawn, not fork: a forked child of a process that has started TensorFlow's thread pools can
    deadlock. Spawn's rule applies: the child imports the parent's main module, so a script that
    calls this (through `variant_figures`, `run_suite`, ...) keeps its work under
    `if __name__ == "__main__":`, as funnel's CLI and benches do. An unguarded one would run
    again in the child and wait there on the variant's lock; `variant_figures` refuses to run in
    a child instead, so the child dies with that message and this raises BrokenProcessPool.
    A child whose parent is gone (`funnel ablate` killed, not interrupted) exits within a second
    or so instead of training on unseen, holding a core and gigabytes (`_exit_when_orphaned`).
    The call (fn and args) reaches the child as a file, not through the executor's call queue:
    on Python 3.10 a worker that dies before reading a call bigger than the pipe's buffer (a
    variant's arguments carry the eval day's truth) leaves the queue's feeder thread blocked on
    the write, the executor's shutdown joins that thread, and the parent hangs instead of
    raising BrokenProcessPool (CPython gh-94777, fixed in later versions).
    """
    context = multiprocessing.get_context("spawn")
    records = context.Queue()
    listener = logging.handlers.QueueListener(records, _HandledHere())
    listener.start()
    os.environ[_CHILD_FLAG] = "1"  # inherited by the child at its start
    try:
        with tempfile.TemporaryDirectory(prefix="funnel-child-") as scratch:
            call = os.path.join(scratch, "call.pickle")
            with open(call, "wb") as f:
                pickle.dump((fn, args), f)
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_start_child,
                                                        initargs=(records, os.getpid())) as pool:
                return pool.submit(_call_from_file, call).result()
    finally:
        os.environ.pop(_CHILD_FLAG, None)
        listener.stop()


_CHILD_FLAG = "FUNNEL_ABLATE_CHILD"


def in_a_child() -> bool:
    """Whether this process is one `in_child_process` started."""
    return bool(os.environ.get(_CHILD_FLAG))


class _HandledHere(logging.Handler):
    """A child's record, handled by this process's logger of the same name."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


def _call_from_file(path: str):
    """In the child: the call `in_child_process` wrote to `path`, made."""
    with open(path, "rb") as f:
        fn, args = pickle.load(f)
    return fn(*args)


def _start_child(records, parent_pid: int) -> None:
    """In the child, before the call: the `funnel` loggers' records (INFO and up) go to the
    parent's queue, and a watcher ends the child when the parent dies."""
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), name="funnel-parent-watch",
                     daemon=True).start()
    logger = logging.getLogger("funnel")
    logger.addHandler(logging.handlers.QueueHandler(records))
    logger.setLevel(logging.INFO)
    logger.propagate = False


ORPHANED_EXIT_CODE = 70


def _exit_when_orphaned(parent_pid: int, every_seconds: float = 1.0) -> None:
    """Ends this process once its parent is gone. A killed parent (SIGKILL, or SIGTERM, which
    Python does not turn into an exception) leaves a ProcessPoolExecutor worker waiting on its
    call and the worker runs its training to the end (seen: a DMT variant training on for
    minutes beside the next run). On the parent's death the child is re-parented, so its parent
    id changes; multiprocessing offers no such watch for pool workers, hence this thread."""
    while True:
        time.sleep(every_seconds)
        if os.getppid() != parent_pid:
            os._exit(ORPHANED_EXIT_CODE)  # no cleanup to wait for: the parent that wanted the result is gone
