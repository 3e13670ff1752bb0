"""``trainer search --ray`` on a real Ray cluster of one node started here.

One cluster serves the whole module (Ray takes a while to start). It is
started with ``ray start`` in a process group of its own and stopped by
killing that group, so no other Ray on the machine is touched.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import SearchError

from .trainer_drives import cycle_actions, write_drive

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
CLUSTER_CPUS = 2
START_TIMEOUT_S = 120.0
SEARCH_TIMEOUT_S = 300.0
#: A small space, so that every batch fits the tiny drives.
SPACE = {
    "learning_rate": {"dist": "loguniform", "low": -7, "high": -5},
    "batch_size": {"dist": "quniform", "low": 8, "high": 16, "q": 1},
    "optimizer": {"dist": "choice", "options": ["adam", "rmsprop"]},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_dict(run: str, val_accuracy: list[float]) -> dict:
    return {
        "run": run,
        "seed": 7,
        "history": {"val_accuracy": val_accuracy},
        "score": sum(val_accuracy) / len(val_accuracy),
        "balanced_accuracy": 0.5,
        "per_class_recall": [0.5, None, None, None, None],
        "confusion": [[1] * 5 for _ in range(5)],
        "majority_baseline": 0.4,
        "collapsed": False,
        "epochs": len(val_accuracy),
        "train_time_s": 1.0,
        "stopped_early": False,
        "overhead_s": 0.1,
    }


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A one-node Ray cluster on 127.0.0.1 with 2 CPUs; its address."""
    if not RAY.exists():
        pytest.skip(f"the ray command is not installed next to {sys.executable}")
    port = _free_port()
    # Ray's unix sockets live under the temp dir: keep its path short.
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    starter = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            f"--port={port}",
            f"--num-cpus={CLUSTER_CPUS}",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = starter.communicate(timeout=START_TIMEOUT_S)
        if starter.returncode != 0:
            pytest.fail(f"ray start failed:\n{output.decode(errors='replace')}")
        yield f"127.0.0.1:{port}"
    finally:
        # The cluster's processes share the group `ray start` led.
        try:
            os.killpg(starter.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("drives")
    write_drive(folder, "a", cycle_actions(60, seed=1), seed=1)
    write_drive(folder, "b", cycle_actions(60, seed=2), seed=2)
    return folder


@pytest.fixture(scope="module")
def space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("space") / "space.json"
    path.write_text(json.dumps(SPACE))
    return path


def _search_command(
    drives: Path, project: Path, space: Path, address: str, *extra: str
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trainer.cli",
        "search",
        str(drives),
        "--name",
        "tiny",
        "--project",
        str(project),
        "--space",
        str(space),
        "--epochs",
        "1",
        "--ray",
        address,
        *extra,
    ]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        command,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SEARCH_TIMEOUT_S,
    )


def trial_records(search: Path) -> list[dict]:
    lines = (search / "trials.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.slow
def test_ray_search_runs_trials_concurrently_into_a_complete_search_folder(
    ray_address: str, drives: Path, space_file: Path, tmp_path: Path
) -> None:
    from trainer.report import write_report
    from trainer.searchdir import load_search

    done = _run(
        _search_command(
            drives,
            tmp_path,
            space_file,
            ray_address,
            "--trials=4",
            "--concurrency=2",
            "--top-k=1",
            "--rerun-runs=1",
        )
    )
    assert done.returncode == 0, done.stderr[-3000:]
    search = tmp_path / "searches" / "tiny"
    record = load_search(search)

    # Four trials of one run each, every model saved where the layout says.
    assert sorted(t["tid"] for t in record.trials) == [0, 1, 2, 3]
    assert all(t["status"] == "ok" for t in record.trials)
    for trial in record.trials:
        assert [r["run"] for r in trial["runs"]] == [f"{trial['tid']}-0"]
        assert record.model_path(f"{trial['tid']}-0").is_file()
        assert (trial["epochs_run"], trial["epochs_planned"]) == (1, 1)
    assert (search / "trials.pkl").is_file()
    assert record.meta["options"]["ray"]["concurrency"] == 2

    # Two trials trained at the same time: some intervals overlap.
    spans = sorted((t["start"], t["end"]) for t in record.trials)
    assert any(
        later_start < end
        for (_, end), (later_start, _) in zip(spans, spans[1:], strict=False)
    )
    assert len({t["worker"] for t in record.trials}) >= 2

    # The re-run and best.json, and the report reads the folder unchanged.
    assert len(record.reruns) == 1
    assert record.best is not None and record.best["run"].startswith("rerun")
    assert record.model_path(record.best["run"]).is_file()
    assert "trained 4 of 4 planned epochs" in done.stdout
    page = write_report(search)
    assert page.is_file() and page.stat().st_size > 0


@pytest.mark.slow
def test_ray_search_resumes_after_the_driver_is_killed(
    ray_address: str, drives: Path, space_file: Path, tmp_path: Path
) -> None:
    command = _search_command(
        drives,
        tmp_path,
        space_file,
        ray_address,
        "--trials=3",
        "--concurrency=2",
        "--top-k=0",
    )
    search = tmp_path / "searches" / "tiny"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill the driver as soon as its first trial is on disk.
        deadline = time.monotonic() + SEARCH_TIMEOUT_S
        while time.monotonic() < deadline and driver.poll() is None:
            trials_file = search / "trials.jsonl"
            if trials_file.exists() and trials_file.read_text().strip():
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the search ended before it could be killed"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    first = trial_records(search)
    assert 1 <= len(first) < 3

    done = _run(command)

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming tiny: {len(first)} of 3 trials done" in done.stdout
    records = trial_records(search)
    assert [r["tid"] for r in records] == [0, 1, 2]
    assert records[: len(first)] == first


@pytest.mark.slow
def test_ray_search_unreachable_address_is_a_one_line_error(
    drives: Path, space_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from trainer.cli import main

    address = f"127.0.0.1:{_free_port()}"
    command = _search_command(drives, tmp_path, space_file, address, "--trials=1")

    code = main(command[3:])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    # Log lines (INFO) may come first; the error itself is one line, the last.
    lines = err.splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == [lines[-1]]
    assert lines[-1].startswith("trainer: error: cannot reach the Ray cluster at")
    assert address in lines[-1]
    assert "Traceback" not in err


@pytest.mark.slow
def test_check_cluster_and_plan_cpus_refuse_what_cannot_run(
    ray_address: str,
) -> None:
    import ray

    from trainer.distributed import RayOptions, check_cluster, connect, plan_cpus

    connect(ray_address)
    try:
        # The nodes have the trainer: the default check passes.
        reports = check_cluster()
        assert reports and not reports[0]["missing"]

        with pytest.raises(SearchError, match="cannot import 'malpi_not_installed'"):
            check_cluster(("numpy", "malpi_not_installed"))

        cpus = ray.cluster_resources()["CPU"]
        assert plan_cpus(cpus, RayOptions(ray_address, concurrency=2)) == 1
        with pytest.raises(SearchError, match="--concurrency 3 trials of 1 CPUs"):
            plan_cpus(cpus, RayOptions(ray_address, concurrency=3))
        with pytest.raises(SearchError, match="lower --concurrency"):
            plan_cpus(cpus, RayOptions(ray_address, concurrency=1, trial_cpus=4))
    finally:
        ray.shutdown()


def test_ray_options_reject_bad_values() -> None:
    from trainer.distributed import RayOptions, connect

    with pytest.raises(SearchError, match="--concurrency 0"):
        RayOptions("auto", concurrency=0)
    with pytest.raises(SearchError, match="is not host:port"):
        connect("just-a-host")


def test_trial_record_keeps_a_run_stopped_by_the_scheduler() -> None:
    from trainer.distributed import trial_record
    from trainer.search import SearchOptions

    options = SearchOptions(trials=4, runs=2, epochs=4)
    partial = _run_dict("ignored", [0.5, 0.3])
    partial["balanced_accuracy"] = float("nan")
    del partial["run"], partial["stopped_early"], partial["overhead_s"]
    entry = {
        "runs": [(_run_dict("3-0", [0.5, 0.6, 0.7, 0.8]), b"model")],
        "last_result": {"partial_run": partial},
        "config": {"batch_size": 9.0, "optimizer": "adam"},
        "start": 10.0,
        "end": 20.0,
        "worker": "node/1",
        "error": None,
    }

    record = trial_record(entry, 5, options)

    assert [r["run"] for r in record["runs"]] == ["5-0", "5-1"]
    assert [r["stopped_early"] for r in record["runs"]] == [False, True]
    assert (record["epochs_run"], record["epochs_planned"]) == (6, 8)
    assert record["score"] == pytest.approx((0.65 + 0.4) / 2)
    assert record["params"] == {"batch_size": 9, "optimizer": "adam"}
    assert record["status"] == "ok"
    # Strict JSON, as searchdir writes it: the nan became null.
    assert (
        json.loads(json.dumps(record, allow_nan=False))["runs"][1]["balanced_accuracy"]
        is None
    )


def test_finished_trials_reach_hyperopt_search_on_resume() -> None:
    from hyperopt import Trials
    from ray.tune.search.hyperopt import HyperOptSearch

    from trainer.distributed import _append_trial, _searcher_trials, hyperopt_vals
    from trainer.space import to_hyperopt

    trials = Trials()
    for tid, (rate, batch, optimizer, score) in enumerate(
        [(0.002, 9, "rmsprop", 0.7), (0.001, 12, "adam", 0.4)]
    ):
        params = {"learning_rate": rate, "batch_size": batch, "optimizer": optimizer}
        record = {"tid": tid, "params": params, "score": score, "status": "ok"}
        _append_trial(trials, tid, record, hyperopt_vals(record, SPACE))

    searcher = HyperOptSearch(
        to_hyperopt(SPACE), metric="score", mode="max", random_state_seed=0
    )
    searcher.set_state(
        {
            "hyperopt_trials": _searcher_trials(trials),
            "rstate": searcher.get_state()["rstate"],
        }
    )
    config = searcher.suggest("next")

    state = searcher.get_state()["hyperopt_trials"]
    assert state.losses()[:2] == [-0.7, -0.4]
    assert [t["misc"]["vals"]["optimizer"] for t in state.trials[:2]] == [[1], [0]]
    assert config["optimizer"] in ("adam", "rmsprop")
    assert 8 <= config["batch_size"] <= 16
    # The records stay with the search folder's Trials, not the searcher's.
    assert "record" in trials.trials[0]["result"]
    assert "record" not in state.trials[0]["result"]
