"""One task of a multi-worker training cluster, for tests/models/test_distributed_training.py:
runs the Trainer's `run_fn` with the TF_CONFIG of its environment on transformed examples and
dumps the trained weights to an .npz.

    python -m tests.models.distributed_worker SPEC.json OUT_DIR

SPEC.json: {"transformed": DIR, "transform_graph": DIR, "custom_config": {...}}; writes
OUT_DIR/serving (the export, on the chief), OUT_DIR/run and OUT_DIR/weights.npz.
"""

import json
import os
import sys

# before TensorFlow is imported
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"


def main(spec_path: str, out_dir: str):
    """Trains; returns the trained model."""
    import numpy as np
    from tfx import v1 as tfx
    from tfx_bsl.public import tfxio

    from models import trainer

    with open(spec_path) as f:
        spec = json.load(f)

    def dataset_factory(file_pattern, options, schema):
        return tfxio.TFExampleRecord(file_pattern=file_pattern, schema=schema).TensorFlowDataset(options)

    model = trainer.run_fn(tfx.components.FnArgs(
        train_files=[os.path.join(spec["transformed"], "Split-train", "*")],
        eval_files=[os.path.join(spec["transformed"], "Split-eval", "*")],
        transform_output=spec["transform_graph"],
        serving_model_dir=os.path.join(out_dir, "serving"), model_run_dir=os.path.join(out_dir, "run"),
        data_accessor=tfx.components.DataAccessor(tf_dataset_factory=dataset_factory,
                                                  record_batch_factory=None, data_view_decode_fn=None),
        custom_config=spec["custom_config"]))
    np.savez(os.path.join(out_dir, "weights.npz"),
             steps=int(model.optimizer.iterations.numpy()),
             **{f"w{i:03d}": w for i, w in enumerate(model.get_weights())})
    return model


if __name__ == "__main__":
    main(*sys.argv[1:])
    sys.stdout.flush()
    # Skip the interpreter's teardown of TensorFlow's traced graphs, collective ops and gRPC
    # server: it took ~2.5 min per worker on the loaded 2-core machine, after all files were written.
    os._exit(0)
