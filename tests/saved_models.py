"""The variables of a loaded SavedModel object: funnel saves without Keras' layer traces
(models/export.py `save`), so its Keras parts load as plain objects with no `.variables`."""

import tensorflow as tf


def saved_variables(loaded) -> list:
    """Every variable `loaded` reaches, at any depth, each once, in the object graph's order."""
    variables, seen = [], set()
    for trackable in tf.train.TrackableView(loaded).descendants():
        if isinstance(trackable, tf.Variable) and id(trackable) not in seen:
            seen.add(id(trackable))
            variables.append(trackable)
    return variables
