"""The Trainer's settings (models/trainer.py `check_trainer_settings`): a misspelt key or a value
the Trainer would fail on is refused before the pipeline runs."""

import pytest

from models import trainer


def _settings(**overrides):
    return {**trainer.DEFAULT_TRAINER_CONFIG, **overrides}


def test_the_defaults_and_the_optional_keys_pass():
    trainer.check_trainer_settings(_settings())
    trainer.check_trainer_settings(_settings(learning_rate=0.01, steps_per_epoch=100, distribution={}))
    trainer.check_trainer_settings(_settings(ema_momentum=0.99))
    trainer.check_trainer_settings(_settings(ema_momentum=None))
    trainer.check_trainer_settings(_settings(optimizer="lazy_adam"))
    trainer.check_trainer_settings(_settings(learning_rate=[1e-3, 1e-4, 1e-5], steps_per_epoch=None, seed=2 ** 32 - 1))


@pytest.mark.parametrize("overrides, message", [
    ({"epoch": 3}, r"unknown keys \['epoch'\]; keys: .*'epochs'"),
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"batch_size": 512.0}, "batch_size must be an integer >= 1, got 512.0"),
    ({"eval_batches": True}, "eval_batches must be an integer >= 1, got True"),
    ({"summary_steps": -1}, "summary_steps must be an integer >= 1"),
    ({"steps_per_epoch": 0}, "steps_per_epoch must be null or an integer >= 1"),
    ({"seed": "0"}, "seed must be an integer"),
    ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*32\), got -1"),  # numpy refused it in the Trainer
    ({"warm_start": "yes"}, "warm_start must be true or false"),
    ({"learning_rate": "1e-3"}, "learning_rate must be a number > 0"),  # YAML reads 1e-3 as a string
    ({"learning_rate": []}, "learning_rate must be"),
    ({"learning_rate": [1e-3, 0]}, "learning_rate must be"),
    ({"ema_momentum": 1}, r"ema_momentum must be null or a number in \(0, 1\), got 1"),
    ({"ema_momentum": "0.99"}, "ema_momentum must be null or a number"),
    ({"optimizer": "LazyAdam"}, r"optimizer must be one of \['adam', 'lazy_adam'\], got 'LazyAdam'"),
])
def test_a_bad_key_or_value_is_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        trainer.check_trainer_settings(_settings(**overrides))
