"""Training progress for people: a Keras callback that reports on the `funnel.progress` logger
(shown on `funnel run`'s console by pipeline/progress.py, in the log file elsewhere), instead of
Keras' own per-epoch printing, which writes to stdout whoever is listening."""

import logging
import time

import tf_keras as keras

PROGRESS_LOGGER = "funnel.progress"


class TrainingProgress(keras.callbacks.Callback):
    """Logs `NAME: epoch E/N, step S` at most every `every_seconds` within an epoch, and a line
    per finished epoch with its loss, the validation AUC of each task and its seconds (the last
    epoch's in `validation_auc`, task -> AUC). `steps`: the training steps run so far. (The
    optimizer's `iterations` is one more after an epoch over a dataset of unknown size: tf_keras
    counts the call that found the data exhausted.)"""

    def __init__(self, name: str, epochs: int, every_seconds: float = 120.0):
        super().__init__()
        self.name, self.epochs, self.every_seconds = name, epochs, every_seconds
        self._supports_tf_logs = True  # the batch hook reads no logs: no per-step sync to host
        self.logger = logging.getLogger(PROGRESS_LOGGER)
        self.epoch = 0
        self.epoch_started = self.last_report = 0.0
        self.finished_steps = self.epoch_steps = 0  # in the epochs done; in the current one
        self.validation_auc = {}  # task -> the last finished epoch's validation AUC

    def get_config(self):
        return {"name": self.name, "epochs": self.epochs, "every_seconds": self.every_seconds}

    @property
    def steps(self) -> int:
        return self.finished_steps + self.epoch_steps

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_started = self.last_report = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the epoch's last step run, also when a call runs several
        # (`steps_per_execution`, parameter-server training)
        self.epoch_steps = batch + 1
        now = time.monotonic()
        if now - self.last_report >= self.every_seconds:
            self.last_report = now
            self.logger.info("%s: epoch %d/%d, step %d, %.0f s", self.name, self.epoch + 1, self.epochs,
                             batch + 1, now - self.epoch_started)

    def on_epoch_end(self, epoch, logs=None):
        self.finished_steps, self.epoch_steps = self.steps, 0
        logs = logs or {}
        self.validation_auc = {k[len("val_"):-len("auc")].rstrip("_"): float(v)
                               for k, v in sorted(logs.items()) if k.startswith("val_") and k.endswith("auc")}
        aucs = ", ".join(f"{task} AUC {auc:.4f}".lstrip() for task, auc in self.validation_auc.items())
        loss = f"loss {float(logs['loss']):.4f}" if "loss" in logs else ""
        self.logger.info("%s: epoch %d/%d done: %s, %.0f s", self.name, epoch + 1, self.epochs,
                         ", ".join(p for p in (loss, f"validation {aucs}" if aucs else "") if p),
                         time.monotonic() - self.epoch_started)
