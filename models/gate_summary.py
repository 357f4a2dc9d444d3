"""What the mixture's gates learned, for TensorBoard: each gate's mean weights over the eval
split, overall and per scenario. For MMoE and PLE these are the experts' utilisation per task
(DMT, Deep Multifaceted Transformers for Multi-objective Ranking in Large-Scale E-commerce
Recommender Systems, Figure 3); HMoE's `<task>_scenario` gates are its scenario gate weights
per scenario (HMoE, Improving Multi-Scenario Learning to Rank in E-commerce by Exploiting Task
Relationships in the Label Space, Figure 3).

Hand-written: the gates live inside the mixture layers (`FunnelModel.gate_weights`), which no
TensorBoard or Keras callback reads; the images are plain heat maps (tf.summary.image).
"""

from typing import Dict, Iterable, List, Sequence

import numpy as np
import tensorflow as tf

from models import features as F

OVERALL = "all"
CELL_PIXELS = 24  # each (row, expert) cell of a heat map is a square this wide


def mean_gate_weights(model, batches: Iterable, scenario_names: Sequence[str]) -> Dict[str, Dict[str, List[float]]]:
    """gate -> row -> its mean weights (one per expert, summing to 1) over the examples of
    `batches` ((features, labels[, weights]) of transformed features); rows: "all" and each
    scenario seen (`scenario_names[id]`, ids past the vocabulary are "oov"). {} when the model's
    mixture has no gates (shared-bottom)."""
    sums: Dict[str, Dict[int, np.ndarray]] = {}
    counts: Dict[int, int] = {}
    for batch in batches:
        features = batch[0]
        gates = model.gate_weights(features)
        if not gates:
            return {}
        scenario = (np.reshape(features[F.SCENARIO].numpy(), [-1]) if F.SCENARIO in features
                    else np.zeros(next(iter(gates.values())).shape[0], np.int64))
        values, inverse = np.unique(scenario, return_inverse=True)
        for value, count in zip(values.tolist(), np.bincount(inverse)):
            counts[value] = counts.get(value, 0) + int(count)
        for name, weights in gates.items():
            totals = np.zeros((values.size, weights.shape[1]))
            np.add.at(totals, inverse, weights.numpy())  # per scenario sum of the batch's weights
            by_scenario = sums.setdefault(name, {})
            for value, total in zip(values.tolist(), totals):
                by_scenario[value] = by_scenario.get(value, 0.0) + total
    result = {}
    examples = sum(counts.values())
    for name, by_scenario in sums.items():
        rows = {OVERALL: (sum(by_scenario.values()) / examples).tolist()}
        for value in sorted(by_scenario):
            label = scenario_names[value] if value < len(scenario_names) else "oov"
            rows[label] = (by_scenario[value] / counts[value]).tolist()
        result[name] = rows
    return result


def heat_map(matrix: np.ndarray) -> np.ndarray:
    """[1, rows * CELL_PIXELS, columns * CELL_PIXELS, 1] grey levels in [0, 1], the brightest
    cell being the largest weight."""
    scaled = matrix / max(float(matrix.max()), 1e-12)
    image = np.kron(scaled, np.ones((CELL_PIXELS, CELL_PIXELS)))
    return image[np.newaxis, :, :, np.newaxis].astype(np.float32)


def write_gate_images(log_dir: str, weights: Dict[str, Dict[str, List[float]]]) -> None:
    """One TensorBoard image per gate, `gates/<gate>`: rows "all" then each scenario, columns
    the experts (the description lists the rows and the weights)."""
    if not weights:
        return
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=0):
        for gate, rows in weights.items():
            labels = list(rows)
            matrix = np.array([rows[label] for label in labels])
            described = "; ".join(f"{label}: " + " ".join(f"{w:.3f}" for w in rows[label]) for label in labels)
            tf.summary.image(f"gates/{gate}", heat_map(matrix), step=0,
                             description=f"mean gate weight per expert (columns), rows {', '.join(labels)} "
                                         f"(brightest = {matrix.max():.3f}): {described}")
    writer.flush()
    writer.close()
