"""Peak resident memory of a process tree while a block runs: Beam's multi-processing
DirectRunner does the work in worker processes (children of this one), so the RSS of this
process alone says nothing about what a stage needs. A thread samples the tree with psutil."""

import threading
import time
from typing import Dict, Optional

import psutil


def tree_rss(root: psutil.Process) -> Dict[str, int]:
    """RSS in bytes now: the root's, all its descendants' summed, and the largest descendant's."""
    workers = []
    for child in root.children(recursive=True):
        try:
            workers.append(child.memory_info().rss)
        except psutil.NoSuchProcess:  # ended between listing and reading
            pass
    return {"main": root.memory_info().rss, "workers": sum(workers), "largest_worker": max(workers, default=0)}


class PeakRss:
    """`with PeakRss() as peak: ...` then `peak.peaks`: the maximum over the samples of each
    `tree_rss` figure and of their total (main + workers), sampled every `interval` seconds
    (a worker that lives shorter than that may be missed)."""

    def __init__(self, pid: Optional[int] = None, interval: float = 0.25):
        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self.peaks = {"main": 0, "workers": 0, "largest_worker": 0, "total": 0}
        self.samples = 0

    def _sample(self) -> None:
        now = tree_rss(self._root)
        now["total"] = now["main"] + now["workers"]
        for name, value in now.items():
            self.peaks[name] = max(self.peaks[name], value)
        self.samples += 1

    def _sample_until_stopped(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # the end state too, however short the block
