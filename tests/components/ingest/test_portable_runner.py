"""The ingest through Beam's portability framework, as Flink, Spark and Dataflow Runner v2 run
Python pipelines: a job service receives the pipeline and stages its artifacts, and SDK harness
workers in their own processes execute it. Beam's Python job service
(`local_job_service_main`) stands in for a cluster's job server, and an SDK worker pool
(`worker_pool_main`, the `--environment_type=EXTERNAL` environment) starts the workers; both
run as separate processes on loopback ports. The examples (a multiset of serialized records per
split), the quarantine records and the report must equal a DirectRunner run of the same logs."""

import collections
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from components.ingest.config import IngestConfig
from components.ingest.runner import REPORT_FILE, run_ingest
from tests.components.ingest.test_bad_input import IN_PROCESS
from tests.components.ingest.test_remote_storage import _records, _write_local_logs
from tests.ports import free_ports

pytestmark = pytest.mark.e2e  # three Python processes and a pipeline submission: ~30-60 s

CONFIG = IngestConfig(num_shards=2, max_quarantine_fraction=1.0)
STARTUP_SECONDS = 180  # importing Beam in a fresh interpreter takes ~20 s on a busy 2-core machine


def _wait_until_listening(process: subprocess.Popen, port: int, log_path: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path) as f:
                pytest.fail(f"{process.args} exited with {process.returncode}:\n{f.read()[-3000:]}")
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{process.args} did not listen on port {port} within {STARTUP_SECONDS} s")


@pytest.fixture(scope="module")
def job_endpoints(tmp_path_factory):
    """(job service endpoint, worker pool endpoint, directory of their logs), each a server
    process of its own. The worker pool starts each SDK worker as `python -c ...` from PATH, so
    this venv's bin goes first."""
    logs_dir = tmp_path_factory.mktemp("services")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    pool_port, job_port = free_ports(2)
    commands = {
        "worker_pool": ["apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"],
        "job_service": ["apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"],
    }
    processes = []
    try:
        for name, command in commands.items():
            with open(logs_dir / f"{name}.log", "wb") as log:
                # A session of its own: the finalizer ends the server and the workers it started.
                processes.append(subprocess.Popen([sys.executable, "-m", *command], env=env, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))
        for process, port, name in zip(processes, (pool_port, job_port), commands):
            _wait_until_listening(process, port, str(logs_dir / f"{name}.log"))
        yield f"localhost:{job_port}", f"localhost:{pool_port}", logs_dir
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _quarantine_lines(out_dir: str) -> collections.Counter:
    quarantine_dir = os.path.join(out_dir, "quarantine")
    lines = collections.Counter()
    for name in os.listdir(quarantine_dir):
        with open(os.path.join(quarantine_dir, name)) as f:
            lines.update(f.read().splitlines())
    return lines


def test_portable_runner_writes_what_the_direct_runner_writes(job_endpoints, tmp_path):
    job_endpoint, worker_pool, services_logs = job_endpoints
    logs = _write_local_logs(str(tmp_path / "logs"))  # every reader path, bad records included
    portable_out, direct_out = str(tmp_path / "portable"), str(tmp_path / "direct")
    portable = run_ingest(logs, portable_out, CONFIG, [
        "--runner=PortableRunner", f"--job_endpoint={job_endpoint}",
        "--environment_type=EXTERNAL", f"--environment_config={worker_pool}"])
    direct = run_ingest(logs, direct_out, CONFIG, IN_PROCESS)

    assert portable == direct
    assert portable["records_quarantined"] > 0 and sum(portable["examples"].values()) > 0
    examples = _records(os.path.join(portable_out, "examples"))
    assert sum(examples.values()) == sum(portable["examples"].values())
    assert examples == _records(os.path.join(direct_out, "examples"))
    quarantined = _quarantine_lines(portable_out)
    assert sum(quarantined.values()) == portable["records_quarantined"]
    assert quarantined == _quarantine_lines(direct_out)
    assert os.path.exists(os.path.join(portable_out, REPORT_FILE))
    # It did run there: the job service ran a job, and the pool started SDK workers for it.
    assert "Running job" in (services_logs / "job_service.log").read_text()
    assert "Starting worker with command" in (services_logs / "worker_pool.log").read_text()
