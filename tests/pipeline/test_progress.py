"""Tests of legible runs: one console line per component, library messages in the log file."""

import io
import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models.progress import PROGRESS_LOGGER, TrainingProgress
from pipeline import progress


def _record(msg, *args, name="absl"):
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_component_lines_say_name_state_and_seconds():
    now = iter([0.0, 12.5, 100.0, 101.25, 200.0])
    out = io.StringIO()
    handler = progress.ComponentProgress(out, clock=lambda: next(now))
    for record in (_record(progress.RUNNING, "Ingest"), _record("[%s] Resolved inputs: %s", "Ingest", "{}"),
                   _record(progress.FINISHED, "Ingest"),
                   _record(progress.RUNNING, "Transform"), _record(progress.CACHED, 7),
                   _record(progress.FINISHED, "Transform"), _record(progress.SKIPPED, "Pusher"),
                   _record(progress.RUNNING, "Trainer"),
                   _record("dmt: epoch 1/2, step 300, 120 s", name=PROGRESS_LOGGER),
                   _record("dmt: epoch 1/2 done: loss 0.2000", name=PROGRESS_LOGGER)):
        handler.emit(record)
    lines = out.getvalue().splitlines()
    assert [line.split() for line in lines] == [
        ["Ingest", "done", "12.5", "s"], ["Transform", "cached", "1.2", "s"], ["Pusher", "skipped"],
        ["Trainer", "running"], ["dmt:", "epoch", "1/2,", "step", "300,", "120", "s"],
        ["dmt:", "epoch", "1/2", "done:", "loss", "0.2000"]]
    assert lines[4].startswith("    dmt:") and handler.lines == 6


def test_library_messages_and_subprocess_stderr_go_to_the_file_not_the_console(tmp_path, capfd):
    path = tmp_path / "work" / "funnel-run.log"
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    with warnings.catch_warnings():  # pytest records warnings; this shows them as a run would
        warnings.simplefilter("always")
        with progress.quiet_run(str(path)) as shown:
            logging.getLogger("apache_beam.runners.worker").warning("a beam worker warning")
            logging.getLogger("tensorflow").warning("a tensorflow warning")
            warnings.warn("a library FutureWarning", FutureWarning)
            # a Beam worker or TF's C++ runtime writes to file descriptor 2 directly
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('native noise\\n')"], check=True)
            import absl.logging

            absl.logging.set_verbosity(absl.logging.WARNING)  # as a library parsing absl's flags does
            logging.getLogger("absl").info(progress.RUNNING, "Trainer")
            logging.getLogger("absl").info(progress.FINISHED, "Trainer")
    text = path.read_text()
    for message in ("a beam worker warning", "a tensorflow warning", "a library FutureWarning", "native noise",
                    "Component Trainer is finished."):
        assert message in text
    out, err = capfd.readouterr()
    assert out.split() [:2] == ["Trainer", "done"] and shown.lines == 1
    assert "warning" not in (out + err).lower() and "noise" not in out + err
    assert root.handlers == handlers_before  # restored, and stderr is the console again
    assert "setLevel" not in logging.getLogger("absl").__dict__
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('after\\n')"], check=True)
    assert capfd.readouterr().err == "after\n"


def test_warnings_held_before_a_run_go_to_its_log_file_not_the_console(tmp_path, capfd):
    path = tmp_path / "run.log"
    with warnings.catch_warnings():  # as a run shows them (pytest records warnings otherwise)
        warnings.simplefilter("always")
        with progress.held_warnings():  # e.g. importing TFX before the run, to check a config
            warnings.warn("an import-time FutureWarning", FutureWarning)
        assert "import-time" not in "".join(capfd.readouterr())
        with progress.quiet_run(str(path)):
            pass
        with progress.quiet_run(str(tmp_path / "next.log")):
            pass
    assert path.read_text().count("FutureWarning: an import-time") == 1  # written once, then released
    assert "import-time" not in (tmp_path / "next.log").read_text()
    assert "import-time" not in "".join(capfd.readouterr())


def test_a_failure_inside_a_quiet_run_is_logged_and_raised(tmp_path):
    path = tmp_path / "run.log"
    try:
        with progress.quiet_run(str(path)):
            raise RuntimeError("the ingest broke")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the error was swallowed")
    assert "the ingest broke" in path.read_text() and "Traceback" in path.read_text()


def test_a_log_under_a_file_is_a_clear_error_and_leaves_logging_alone(tmp_path):
    (tmp_path / "out").write_text("a file where a directory should be")
    handlers, stderr_file = list(logging.getLogger().handlers), os.fstat(2)
    for log in (tmp_path / "out" / "run.log", tmp_path / "out" / "ablations" / "ablate.log"):
        try:
            with progress.quiet_run(str(log)):
                raise AssertionError("the block ran")
        except progress.UnwritableLogError as e:
            assert str(e) == f"cannot write {log}: {tmp_path / 'out'} is a file, not a directory"
        else:
            raise AssertionError("no error")
    assert logging.getLogger().handlers == handlers and os.fstat(2) == stderr_file


def test_training_progress_reports_steps_and_each_epoch(caplog):
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential([keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    progress = TrainingProgress("tiny", 2, every_seconds=0.0)
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        history = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0, callbacks=[progress])
    messages = [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]
    assert any(m.startswith("tiny: epoch 1/2, step 4, ") for m in messages)
    done = [m for m in messages if " done: " in m]
    assert len(done) == 2 and done[1].startswith("tiny: epoch 2/2 done: loss ") and ", validation AUC " in done[1]
    # what fit.json records: the last epoch's validation AUC (one output: no task name)
    assert progress.validation_auc == {"": pytest.approx(history.history["val_auc"][-1])}


def test_training_progress_counts_the_steps_run_on_data_of_unknown_size():
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    # a filter hides the dataset's size from tf_keras, as the Trainer's TFRecord input does
    data = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(8).filter(lambda *_: True)
    model = keras.Sequential([keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    progress = TrainingProgress("tiny", 2)
    model.fit(data, epochs=2, verbose=0, callbacks=[progress])
    assert progress.steps == 10  # 5 batches, twice
    # what fit.json counted before: the optimizer's iterations count the call that found the
    # first epoch's data exhausted
    assert int(model.optimizer.iterations.numpy()) == 11


def test_a_commands_library_log_is_a_local_file_beside_its_output(tmp_path, monkeypatch):
    import tempfile

    assert progress.command_log(str(tmp_path / "out"), "ingest") == str(tmp_path / "out" / "funnel-ingest.log")
    assert progress.command_log("gs://bucket/predictions", "predict") == os.path.join(
        tempfile.gettempdir(), "funnel-predict.log")  # quiet_run writes the log with open()
    monkeypatch.chdir(tmp_path)
    assert progress.command_log("", "predict") == str(tmp_path / "funnel-predict.log")  # `--out p.jsonl`
