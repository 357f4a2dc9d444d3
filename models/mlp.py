"""The multi-layer perceptron every part is built from (experts, gates, towers, bottoms)."""

from typing import Sequence, Union

import tf_keras as keras

from models.dropout import Dropout


class MLP(keras.layers.Layer):
    """Dense + ReLU layers, dropout after each (one rate for all, or one per layer), then an
    optional linear output layer of `output_units` units."""

    def __init__(self, units: Sequence[int] = (), dropout: Union[float, Sequence[float]] = 0.0,
                 output_units: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        rates = list(dropout) if isinstance(dropout, (list, tuple)) else [dropout] * len(self.units)
        if len(rates) != len(self.units):
            raise ValueError(f"{len(rates)} dropout rates for {len(self.units)} layers")
        self.dropout = [float(r) for r in rates]
        self.output_units = int(output_units)
        self.hidden = [keras.layers.Dense(n, activation="relu", name=f"dense_{i}")
                       for i, n in enumerate(self.units)]
        self.drops = [Dropout(r) if r else None for r in self.dropout]
        self.out = keras.layers.Dense(self.output_units, name="output") if self.output_units else None

    @property
    def output_dim(self):
        return self.output_units or (self.units[-1] if self.units else None)

    def call(self, x, training=None):
        for layer, drop in zip(self.hidden, self.drops):
            x = layer(x)
            if drop is not None:
                x = drop(x, training=training)
        return x if self.out is None else self.out(x)

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "dropout": list(self.dropout),
                "output_units": self.output_units}


def mlp(units: Sequence[int], name: str, dropout: Union[float, Sequence[float]] = 0.0,
        output_units: int = 0) -> MLP:
    return MLP(units, dropout, output_units, name=name)
