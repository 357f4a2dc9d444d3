import os

# TFX 1.16 runs on Keras 2: must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import pytest  # noqa: E402


# one in-process Beam worker: on a tiny world, multi-processing's start-up is most of the cost
# (measured on this world: StatisticsGen 41 s -> 13 s)
IN_PROCESS_BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _tiny_world(root):
    """The e2e tests' world (150 users x 3 days) in `root`/logs, and the pipeline settings for it."""
    from pipeline.config import load_config
    from simulation.simulator import simulate
    from simulation.world import SimulationConfig

    simulate(str(root / "logs"), SimulationConfig(users=150, days=3, seed=4))
    config = load_config()
    config["trainer"].update(epochs=1, batch_size=256, summary_steps=4)  # ~17 steps: a few per-step points
    # A tiny world has a handful of orders in its eval day: gate on a sane AUC floor only.
    config["evaluator"]["min_auc"] = 0.0
    return config


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory):
    """A tiny simulated world through the whole TFX pipeline (LocalDagRunner), shared by the
    end-to-end tests: (root with logs/ and work/, pipeline root)."""
    from pipeline import local_runner

    root = tmp_path_factory.mktemp("e2e")
    config = _tiny_world(root)
    pipeline_root = local_runner.run_local(str(root / "logs"), str(root / "work"), config, IN_PROCESS_BEAM)
    return root, pipeline_root


@pytest.fixture(scope="session")
def e2e_examples(tmp_path_factory):
    """The same world through the data steps only (Ingest .. Transform), by `funnel ablate`'s own
    `prepare_data`: what the heavy tests train their own models on (the Trainer per
    architecture, distributed training, the ablation and peer suites). A fixture of its own, so
    those tests form a group of their own, run on the other xdist worker beside the shared run's
    group: behind it, on one worker, the two took over an hour in a row. (root, pipeline root)."""
    from pipeline import ablate

    root = tmp_path_factory.mktemp("e2e_examples")
    config = _tiny_world(root)
    data = ablate.prepare_data(str(root / "logs"), str(root / "work"), config, IN_PROCESS_BEAM)
    return root, ablate.data_root(str(root / "work"), data["key"])


@pytest.fixture(scope="session")
def pushed_model(e2e_run):
    """The directory of the e2e pipeline's pushed version."""
    root, _ = e2e_run
    versions = [v for v in os.listdir(root / "work" / "serving") if v.isdigit()]
    return str(root / "work" / "serving" / versions[0])


# The session fixtures whose tests form one xdist group each (so each is built once).
SHARED_RUNS = ("e2e_run", "e2e_examples")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """`make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`). Each worker
    builds its own session and module fixtures, so tests are handed out in groups: the tests of
    the shared pipeline run (`e2e_run`) in one group, so that run is built once, those of the
    data-only run (`e2e_examples`) in another, and the rest by module, so a module's fixture
    (e.g. an ingest run) is not built on both workers."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_shared_run(item) or item.nodeid.split("::")[0]))
    # The longest groups first (with --no-loadscope-reorder, as the Makefile runs it, xdist hands
    # groups out in this order, one to each worker in turn, more as a worker runs low): the two
    # shared runs' groups (`make test-all` on this machine: the data-only run's ~46 min, the
    # shared run's ~27 min) start at once on different workers, then the other end-to-end groups
    # (the crash test ~6 min, the daily runs ~15 min), and the short tests fill in around them,
    # instead of a long group starting last and running alone.
    items.sort(key=_start_order)


def _shared_run(item):
    """The shared run (of SHARED_RUNS) the test uses, or None."""
    return next((name for name in SHARED_RUNS if name in getattr(item, "fixturenames", ())), None)


def _start_order(item) -> int:
    if _shared_run(item) is not None:
        return 0
    if item.get_closest_marker("e2e") is not None:
        return 1
    return 2
