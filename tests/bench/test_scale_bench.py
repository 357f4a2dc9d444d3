"""The measuring helpers of bench.scale_bench (the bench itself takes 20+ min; a tiny run still
takes minutes of Beam and tf.Transform start-up, so it is not run here)."""

import os
import subprocess
import sys
import time

import psutil
import pytest

from bench import scale_bench
from bench.process_memory import PeakRss

MB = 1 << 20
# A child that fills 200 MB (written, so resident), says so, then waits to be told to exit.
_ALLOCATE = "import sys; block = b'x' * (200 << 20); print('ready', flush=True); sys.stdin.readline()"


def test_peak_rss_counts_a_child_process_memory():
    with PeakRss(interval=0.05) as peak:
        child = subprocess.Popen([sys.executable, "-c", _ALLOCATE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"ready\n"
        baseline = peak.samples
        while peak.samples < baseline + 2:  # sampled while the child holds its 200 MB
            time.sleep(0.01)
        child.communicate(b"\n")
    assert peak.peaks["largest_worker"] >= 200 * MB
    assert peak.peaks["workers"] >= peak.peaks["largest_worker"]
    assert peak.peaks["main"] > 0
    assert peak.peaks["total"] >= peak.peaks["workers"]
    assert peak.peaks["total"] <= peak.peaks["main"] + peak.peaks["workers"]


def test_measure_reports_rates_and_the_bytes_a_stage_writes(tmp_path):
    out = tmp_path / "out"

    def stage():
        (out / "part").mkdir(parents=True)
        (out / "part" / "a").write_bytes(b"x" * 1000)
        (out / "b").write_bytes(b"y" * 234)
        sum(i * i for i in range(1_000_000))  # some CPU time of its own (~0.1 s)

    measured = scale_bench.measure(stage, str(out), impressions=5000, workers=2)
    assert measured["bytes_written"] == 1234
    assert measured["cpu_seconds"]["workers"] == 0  # no child ran
    cpu = measured["cpu_seconds"]["main"]
    assert 0 < cpu and measured["impressions_per_cpu_second"] == pytest.approx(5000 / cpu)
    assert measured["impressions_per_second"] == pytest.approx(5000 / measured["seconds"])
    assert measured["impressions_per_second_per_worker"] == pytest.approx(5000 / measured["seconds"] / 2)
    assert measured["rss_samples"] >= 2 and measured["peak_rss_bytes"]["main"] > 0


def test_cpu_seconds_of_the_workers_count_a_finished_child():
    before = psutil.Process().cpu_times()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    cpu = scale_bench.cpu_seconds(before, psutil.Process().cpu_times())
    assert cpu["workers"] > 0.05  # the child's ~0.2 s of arithmetic, once waited for
    assert cpu["main"] < cpu["workers"]


def test_simulated_logs_are_reused_and_a_partial_copy_is_redone(tmp_path):
    work = str(tmp_path)
    logs, summary, simulated = scale_bench.simulated_logs(work, users=3, days=1, seed=1)
    assert simulated and summary["counts"]["impressions"] > 0
    assert scale_bench.simulated_logs(work, users=3, days=1, seed=1) == (logs, summary, False)

    os.remove(os.path.join(logs, scale_bench.SUMMARY_FILE))  # as if stopped before the end
    with open(os.path.join(logs, "impressions", "stray.jsonl.gz"), "wb") as f:
        f.write(b"half")
    again, summary_again, simulated = scale_bench.simulated_logs(work, users=3, days=1, seed=1)
    assert simulated and again == logs and summary_again["counts"] == summary["counts"]
    assert not os.path.exists(os.path.join(logs, "impressions", "stray.jsonl.gz"))


def test_too_small_a_world_is_refused_on_the_console_and_the_libraries_go_to_the_log(tmp_path, capfd):
    log = tmp_path / "bench" / "scale.log"
    code = scale_bench.main(["--work", str(tmp_path), "--users", "3", "--days", "1", "--seed", "1",
                             "--min-impressions", "10000000", "--log", str(log), "--out", str(tmp_path / "scale.json")])
    shown = capfd.readouterr()
    assert code == 2 and not (tmp_path / "scale.json").exists()
    assert shown.out == f"scale bench: library messages go to {log}\n"
    assert "< --min-impressions 10000000: raise --users" in shown.err
    assert shown.err.count("\n") == 1  # the refusal alone: nothing of the simulation's libraries
    assert log.exists()
