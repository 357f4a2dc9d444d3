"""pipeline/child_process.py: one call in a fresh process."""

import logging
import os

import pytest

from pipeline import child_process


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
