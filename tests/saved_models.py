"""The variables of a loaded SavedModel object: funnel saves without Keras' layer traces
(models/export.py `save`), so its Keras parts load as plain objects with no `.variables`."""

import tensorflow as tf


def saved_variables(loaded) -> list:
    """Every variable `loaded` reaches, at any depth (each once: the view visits every object once)."""
    return [t for t in tf.train.TrackableView(loaded).descendants() if isinstance(t, tf.Variable)]
