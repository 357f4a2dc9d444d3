import os

# TFX 1.16 runs on Keras 2: must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory):
    """A tiny simulated world through the whole TFX pipeline (LocalDagRunner), shared by the
    end-to-end tests: (root with logs/ and work/, pipeline root)."""
    from pipeline import local_runner
    from pipeline.config import load_config
    from simulation.simulator import simulate
    from simulation.world import SimulationConfig

    root = tmp_path_factory.mktemp("e2e")
    simulate(str(root / "logs"), SimulationConfig(users=150, days=3, seed=4))
    config = load_config()
    config["trainer"].update(epochs=1, batch_size=256, summary_steps=4)  # ~17 steps: a few per-step points
    # A tiny world has a handful of orders in its eval day: gate on a sane AUC floor only.
    config["evaluator"]["min_auc"] = 0.0
    # one in-process Beam worker: on a tiny world, multi-processing's start-up is most of the cost
    # (measured on this world: StatisticsGen 41 s -> 13 s)
    pipeline_root = local_runner.run_local(str(root / "logs"), str(root / "work"), config,
                                           ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return root, pipeline_root


@pytest.fixture(scope="session")
def pushed_model(e2e_run):
    """The directory of the e2e pipeline's pushed version."""
    root, _ = e2e_run
    versions = [v for v in os.listdir(root / "work" / "serving") if v.isdigit()]
    return str(root / "work" / "serving" / versions[0])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """`make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`). Each worker
    builds its own session and module fixtures, so tests are handed out in groups: every test of
    the shared pipeline run (`e2e_run`) in one group, so that run is built once, and the rest by
    module, so a module's fixture (e.g. an ingest run) is not built on both workers."""
    for item in items:
        if "e2e_run" in getattr(item, "fixturenames", ()):
            group = "e2e_run"
        else:
            group = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
    # The longest groups first (with --no-loadscope-reorder, as the Makefile runs it, xdist hands
    # groups out in this order, one to each worker in turn, more as a worker runs low):
    # the shared run's group (~18 min on this machine) and the crash test (~9 min) start at once
    # on different workers and the short tests fill in around them, instead of one of them
    # starting last and running alone.
    items.sort(key=_start_order)


def _start_order(item) -> int:
    if "e2e_run" in getattr(item, "fixturenames", ()):
        return 0
    if item.get_closest_marker("e2e") is not None:
        return 1
    return 2
