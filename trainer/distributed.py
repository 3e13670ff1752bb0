"""``trainer search --ray``: the same search on a Ray cluster, with Ray Tune.

The algorithm is still hyperopt's TPE, through Tune's ``HyperOptSearch`` on
the same space; the objective is the same ``trainer.train`` code; the search
folder is the same, so ``trainer report`` and ``trainer export`` read it
unchanged. ``run_ray_search`` reads top to bottom:

1. Connect to the cluster (``auto``, ``local``, ``host:port`` or
   ``ray://host:port``), check that every node can import the trainer's
   packages, and that ``concurrency`` trials of ``trial_cpus`` CPUs fit.
2. Open the search folder as the local search does; put the decoded dataset
   in Ray's object store once, so remote nodes fetch it from the driver.
3. Run ``num_samples`` more trials with ``tune.Tuner``: ``HyperOptSearch``
   behind a ``ConcurrencyLimiter``, seeded with the trials already done (a
   resumed search continues), and on request Tune's ASHA or median-stopping
   scheduler on the per-epoch running score.
4. Workers send each run's result and model file to a small inbox actor;
   the driver takes finished trials from it and writes trials.pkl,
   trials.jsonl and runs/<tid>-<k>/model.keras as they come back, so the
   search folder only has to exist on the driver's machine.
5. Re-run the top configurations as Ray tasks, one per run, and write
   rerun.jsonl and best.json.

Tune ends a trial that its scheduler stops between two epochs, without
letting it finish its run. So, with a scheduler, every epoch report carries
the run's record so far (history, score, validation figures) and the inbox
keeps the run's latest model: a stopped run is written like a finished one.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from shared.errors import SearchError
from shared.modelcard import write_atomic
from trainer import searchdir
from trainer.data import Dataset
from trainer.early_stopping import (
    RUNNING_METRIC,
    StoppingRule,
    describe_savings,
    running_scores,
    tune_scheduler,
)
from trainer.search import (
    RERUN_SEED_BASE,
    TRIAL_SEED_STRIDE,
    SearchOptions,
    check_resumable,
    load_trials,
    print_rerun_ranking,
    record_best,
    rerun_rank_key,
    trial_line,
    trial_records,
)
from trainer.space import default_space, largest_batch, to_hyperopt, to_params
from trainer.space import validate_space as _validate_space

log = logging.getLogger(__name__)

#: What every node must have to train a trial.
REQUIRED_MODULES = ("tensorflow", "keras", "hyperopt", "numpy", "trainer")
CONNECT_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 120.0
#: How often the driver collects finished trials from the inbox.
POLL_INTERVAL_S = 0.5
#: The Tune experiment's folder inside the search folder.
RAY_DIR = "ray"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the search runs.

    Attributes:
        address: ``auto`` (a cluster started with ``ray start``), ``local``
            (start one on this machine), ``host:port`` or ``ray://host:port``.
        concurrency: trials that train at the same time.
        trial_cpus: CPUs (and TensorFlow threads) per trial; None: the
            cluster's CPUs shared by ``concurrency`` trials.
    """

    address: str
    concurrency: int = 2
    trial_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise SearchError(f"--concurrency {self.concurrency!r} must be 1 or more")
        if self.trial_cpus is not None and self.trial_cpus < 1:
            raise SearchError(f"--trial-cpus {self.trial_cpus!r} must be 1 or more")


# --- the cluster ---------------------------------------------------------------


def connect(address: str) -> None:
    """Connect this process to the Ray cluster at ``address``.

    Raises:
        SearchError: nothing answers at the address, or Ray refuses it.
    """
    if ray.is_initialized():
        return
    if address not in ("auto", "local"):
        _check_reachable(address)
    try:
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError, SystemExit) as err:
        hint = (
            "start one with `ray start --head --port=6379`, or use --ray local"
            if address == "auto"
            else "check the address and that `ray start` runs there"
        )
        raise SearchError(
            f"cannot connect to the Ray cluster at {address!r} ({err}); {hint}"
        ) from err
    log.info("connected to Ray at %s: %s", address, ray.cluster_resources())


def _check_reachable(address: str) -> None:
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(
            f"Ray address {address!r} is not host:port; use auto, local, "
            "HOST:6379 or ray://HOST:10001"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise SearchError(
            f"cannot reach the Ray cluster at {address!r} ({err}); start it there "
            "with `ray start --head --port=6379` and check the firewall"
        ) from err


def _probe(modules: tuple[str, ...]) -> dict[str, Any]:
    """Runs on a node: which of ``modules`` it lacks, and its versions."""
    import platform

    # Found, not imported: importing TensorFlow on every node would take
    # longer than the check is worth.
    missing = {}
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError) as err:
            found, missing[name] = False, f"{type(err).__name__}: {err}"
        if not found:
            missing.setdefault(name, "not installed")
    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "missing": missing,
    }


def check_cluster(modules: tuple[str, ...] = REQUIRED_MODULES) -> list[dict[str, Any]]:
    """Run a probe on every alive node; what each node reported.

    Raises:
        SearchError: a node cannot import one of ``modules``, runs another
            Python or Ray than the driver, or does not answer.
    """
    import platform

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_probe)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(modules)
        for n in nodes
    ]
    try:
        reports = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError as err:
        raise SearchError(
            f"a Ray node did not answer a {PROBE_TIMEOUT_S:.0f} s import check; "
            "see `ray status` on the head node"
        ) from err
    except ray.exceptions.RayError as err:
        raise SearchError(
            f"the import check failed on a Ray node ({_first_line(err)}); install "
            'the trainer there: pip install "malpi[trainer,ray]"'
        ) from err
    for report in reports:
        if report["missing"]:
            name, why = next(iter(report["missing"].items()))
            raise SearchError(
                f"Ray node {report['host']!r} cannot import {name!r} ({why}); "
                'install the trainer on every node: pip install "malpi[trainer,ray]"'
            )
        if (
            report["python"].rsplit(".", 1)[0]
            != platform.python_version().rsplit(".", 1)[0]
            or report["ray"] != ray.__version__
        ):
            raise SearchError(
                f"Ray node {report['host']!r} runs Python {report['python']} and "
                f"Ray {report['ray']}, the driver Python {platform.python_version()} "
                f"and Ray {ray.__version__}; install the same versions on every node"
            )
    return reports


def plan_cpus(cluster_cpus: float, options: RayOptions) -> int:
    """CPUs per trial so that ``concurrency`` trials fit in the cluster.

    Raises:
        SearchError: the trials asked for need more CPUs than the cluster has.
    """
    cpus = options.trial_cpus or max(1, int(cluster_cpus // options.concurrency))
    if options.concurrency * cpus > cluster_cpus:
        raise SearchError(
            f"--concurrency {options.concurrency} trials of {cpus} CPUs need "
            f"{options.concurrency * cpus} CPUs but the cluster has "
            f"{cluster_cpus:g}; lower --concurrency (or --trial-cpus) or add nodes"
        )
    return cpus


# --- what runs on the workers ----------------------------------------------------


class _Inbox:
    """Collects what workers send until the driver takes it (a Ray actor).

    Workers call ``begin`` and ``add_run``; Tune's callback calls ``finish``;
    the driver polls ``take_finished``. It holds model files only until the
    driver has written them.
    """

    def __init__(self, first_index: int) -> None:
        self.next_index = first_index
        self.trials: dict[str, dict[str, Any]] = {}
        self.finished: list[dict[str, Any]] = []

    def begin(self, trial_id: str, worker: str) -> int:
        entry = self._entry(trial_id)
        entry.update(index=self.next_index, start=time.time(), worker=worker)
        self.next_index += 1
        return entry["index"]

    def add_run(self, trial_id: str, run: dict[str, Any], model: bytes | None) -> None:
        self._entry(trial_id)["runs"].append((run, model))

    def keep_model(self, trial_id: str, model: bytes) -> None:
        """The model of the unfinished run after its latest epoch."""
        self._entry(trial_id)["partial_model"] = model

    def fail(self, trial_id: str, error: str) -> None:
        self._entry(trial_id)["error"] = error

    def finish(
        self,
        trial_id: str,
        config: dict[str, Any],
        last_result: dict[str, Any],
        error: str | None,
    ) -> None:
        entry = self.trials.pop(trial_id, None) or self._new()
        entry.update(config=config, last_result=last_result, end=time.time())
        if error and not entry.get("error"):
            entry["error"] = error
        self.finished.append(entry)

    def take_finished(self) -> list[dict[str, Any]]:
        finished, self.finished = self.finished, []
        return finished

    def _entry(self, trial_id: str) -> dict[str, Any]:
        return self.trials.setdefault(trial_id, self._new())

    @staticmethod
    def _new() -> dict[str, Any]:
        return {"runs": [], "error": None, "start": time.time(), "worker": ""}


def _epoch_reporter(
    run_index: int,
    seed: int,
    done_scores: list[float],
    epochs: int,
    dataset: Dataset,
    evaluate: bool,
    objective: str,
    keep_model: Callable[[bytes], None],
) -> Any:
    """A Keras callback that reports each epoch of run ``run_index`` to Tune.

    With ``evaluate`` (a scheduler may stop the trial), each epoch also
    measures the run and hands its model to ``keep_model``, so that a run
    stopped after this epoch still has a record and a model.
    """
    import keras
    import numpy as np

    from trainer import metrics

    class TuneReporter(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}
            self.started = time.perf_counter()

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            accuracy = self.history.get("val_accuracy", [])
            running = running_scores(accuracy)[-1] if accuracy else 0.0
            partial = None
            if evaluate:
                # Tune may stop the trial after this report: keep what a run
                # record needs, since the run will not finish on its own.
                probabilities = self.model.predict(dataset.x_val, verbose=0)
                figures = metrics.evaluate_run(
                    self.history, dataset.y_val, np.argmax(probabilities, axis=1)
                )
                partial = {
                    "history": self.history,
                    "epochs": epoch + 1,
                    "seed": seed,
                    "train_time_s": time.perf_counter() - self.started,
                    **figures,
                }
                running_value = figures[objective]
                with tempfile.TemporaryDirectory(prefix="malpi-epoch-") as tmp:
                    model_file = Path(tmp) / searchdir.MODEL_FILE
                    self.model.save(model_file)
                    keep_model(model_file.read_bytes())
            else:
                running_value = running
            scores = [*done_scores, running_value]
            tune.report(
                {
                    RUNNING_METRIC: running,
                    "score": float(np.nanmean(scores)) if scores else 0.0,
                    "run_index": run_index,
                    "epoch": epoch + 1,
                    "epochs_planned": epochs,
                    "partial_run": partial,
                }
            )

    return TuneReporter()


def _trainable(
    config: dict[str, Any],
    data_ref: list[Any],
    inbox: Any,
    options: dict[str, Any],
) -> None:
    """One Tune trial: train the configuration ``runs`` times and report."""
    from trainer.train import TrainOptions, train_run

    _set_threads(options["threads"])
    from trainer.model import ModelParams

    trial_id = tune.get_context().get_trial_id()
    worker = f"{socket.gethostname()}/{os.getpid()}"
    index = ray.get(inbox.begin.remote(trial_id, worker))
    dataset = ray.get(data_ref[0])
    train_options = TrainOptions(**options["train"])
    seed = options["seed"] + TRIAL_SEED_STRIDE * index
    objective = train_options.objective
    done_scores: list[float] = []

    try:
        params = ModelParams.from_dict(to_params(config))
        for k in range(train_options.runs):
            reporter = _epoch_reporter(
                k,
                seed + k,
                done_scores,
                train_options.epochs,
                dataset,
                options["evaluate_each_epoch"],
                objective,
                lambda model: ray.get(inbox.keep_model.remote(trial_id, model)),
            )
            with tempfile.TemporaryDirectory(prefix="malpi-run-") as tmp:
                run_dir = Path(tmp) / "run"
                result = train_run(
                    params,
                    dataset,
                    train_options,
                    seed=seed + k,
                    name=f"{index}-{k}",
                    run_dir=run_dir,
                    callbacks=[reporter],
                )
                model_file = run_dir / searchdir.MODEL_FILE
                model = model_file.read_bytes() if model_file.exists() else None
            ray.get(inbox.add_run.remote(trial_id, result.to_dict(), model))
            done_scores.append(result.objective(objective))
        finite = [v for v in done_scores if math.isfinite(v)]
        if not finite:
            raise FloatingPointError(
                f"every run's {objective} was nan (training diverged)"
            )
    except Exception as err:
        # Tune marks the trial as errored, and TPE leaves it out.
        ray.get(inbox.fail.remote(trial_id, f"{type(err).__name__}: {err}"))
        raise
    final = sum(finite) / len(finite)
    tune.report({"score": final, RUNNING_METRIC: final, "partial_run": None})


def _set_threads(threads: int) -> None:
    """Set TensorFlow's threads once per worker process (reused actors keep them)."""
    import tensorflow as tf

    from trainer.train import set_threads

    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        set_threads(threads)


class _FinishCallback(tune.Callback):
    """Tells the inbox when Tune ends a trial (done, stopped or failed)."""

    def __init__(self, inbox: Any) -> None:
        self.inbox = inbox

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info):
        result = dict(trial.last_result or {})
        ray.get(self.inbox.finish.remote(trial.trial_id, trial.config, result, None))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info):
        where = trial.error_file or "the Tune experiment folder"
        ray.get(
            self.inbox.finish.remote(
                trial.trial_id,
                trial.config,
                dict(trial.last_result or {}),
                f"the trial's worker failed; see {where}",
            )
        )


# --- the driver ------------------------------------------------------------------


def run_ray_search(
    path: str | Path,
    options: SearchOptions,
    ray_options: RayOptions,
    *,
    dataset: Dataset,
    space: dict[str, Any] | None = None,
    echo: Callable[[str], None] = log.info,
) -> searchdir.SearchRecord:
    """Run (or resume) the search kept in ``path`` on a Ray cluster.

    Raises:
        SearchError: the cluster cannot be reached, lacks the trainer's
            packages or CPUs, or the folder belongs to another search.
    """
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.hyperopt import HyperOptSearch

    path = Path(path)

    # The folder and the space, checked as the local search checks them.
    meta = searchdir.read_meta(path)
    space = space if space is not None else default_space(options.max_batch)
    _validate_space(space)
    if largest_batch(space) > dataset.train_frames:
        raise SearchError(
            f"the space draws batches up to {largest_batch(space)} frames but the "
            f"training set has {dataset.train_frames}; lower --max-batch or add drives"
        )
    if isinstance(options.early_stopping, str):
        rule = StoppingRule(options.early_stopping)
    else:
        rule = None

    # The cluster: reachable, able to train, wide enough.
    connect(ray_options.address)
    check_cluster()
    cluster_cpus = float(ray.cluster_resources().get("CPU", 0))
    trial_cpus = plan_cpus(cluster_cpus, ray_options)
    echo(
        f"ray: {len(ray.nodes())} nodes, {cluster_cpus:g} CPUs; "
        f"{ray_options.concurrency} trials at a time, {trial_cpus} CPUs each"
    )

    # A new search writes search.json; a resumed one continues its trials.
    if meta is None:
        options_data = {**options.to_dict(), "ray": asdict(ray_options)}
        meta = searchdir.new_meta(space, options_data, dataset.summary())
        searchdir.write_meta(path, meta)
    else:
        check_resumable(path, meta, space, options, dataset)
    trials = load_trials(path)
    records = trial_records(trials)
    if records:
        echo(f"resuming {path.name}: {len(records)} of {options.trials} trials done")
    remaining = options.trials - len(trials.trials)

    # The data once in the object store; workers fetch it from there.
    data_ref = ray.put(dataset)
    if remaining > 0:
        inbox = ray.remote(num_cpus=0)(_Inbox).remote(len(trials.trials))
        worker_options = {
            "threads": trial_cpus,
            "seed": options.seed,
            "train": {**asdict(options.train_options()), "save_models": True},
            "evaluate_each_epoch": rule is not None,
        }
        trainable = tune.with_resources(
            tune.with_parameters(
                _trainable, data_ref=[data_ref], inbox=inbox, options=worker_options
            ),
            {"cpu": trial_cpus},
        )

        # TPE over the same space, knowing the trials already done.
        searcher = HyperOptSearch(
            to_hyperopt(space),
            metric="score",
            mode="max",
            n_initial_points=options.startup_trials,
            random_state_seed=options.seed + len(trials.trials),
        )
        if trials.trials:
            searcher.set_state(
                {
                    "hyperopt_trials": _searcher_trials(trials),
                    "rstate": searcher.get_state()["rstate"],
                }
            )
        scheduler = None
        if rule is not None:
            # One report per epoch of each run, and a last one with the score.
            scheduler = tune_scheduler(rule, options.epochs * options.runs + 1)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(
                    searcher, max_concurrent=ray_options.concurrency
                ),
                scheduler=scheduler,
                num_samples=remaining,
                # A trial's process keeps TensorFlow loaded for the next one.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                storage_path=str((path / RAY_DIR).resolve()),
                name=time.strftime("tune-%Y%m%d-%H%M%S"),
                callbacks=[_FinishCallback(inbox)],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )

        # Tune runs the trials; this thread writes each one as it comes back.
        # (Tune's own progress table is off: the writer prints a line a trial.)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        writer = _RecordWriter(path, trials, space, options, inbox, echo)
        writer.start()
        try:
            tuner.fit()
        finally:
            writer.stop()
        records = trial_records(trials)

    echo(describe_savings(records))

    # Re-run the best configurations as Ray tasks, one per run.
    reruns = _rerun_top(path, records, data_ref, options, trial_cpus, echo)
    record_best(path, records, reruns, options.objective, echo)
    return searchdir.load_search(path)


class _RecordWriter:
    """Takes finished trials from the inbox and writes them in the search folder."""

    def __init__(
        self,
        path: Path,
        trials: Any,
        space: dict[str, Any],
        options: SearchOptions,
        inbox: Any,
        echo: Callable[[str], None],
    ) -> None:
        self.path = path
        self.trials = trials
        self.space = space
        self.options = options
        self.inbox = inbox
        self.echo = echo
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-records")
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is left, then end the thread (re-raising its error)."""
        self._stop.set()
        self._thread.join()
        self.drain()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while not self._stop.wait(POLL_INTERVAL_S):
                self.drain()
        except BaseException as err:  # surfaced by stop()
            self._error = err

    def drain(self) -> None:
        for entry in ray.get(self.inbox.take_finished.remote()):
            self._write(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        tid = len(self.trials.trials)
        record = trial_record(entry, tid, self.options)
        models = [model for _, model in entry["runs"]]
        if len(record["runs"]) > len(models):
            models.append(entry.get("partial_model"))
        for k, model in enumerate(models):
            if model is not None:
                model_path = searchdir.run_model_path(self.path, f"{tid}-{k}")
                model_path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(model_path, model)
        _append_trial(self.trials, tid, record, hyperopt_vals(record, self.space))
        searchdir.write_trials(self.path, self.trials, trial_records(self.trials))
        self.echo(trial_line(trial_records(self.trials), self.options.trials))


def trial_record(entry: dict[str, Any], tid: int, options: SearchOptions) -> dict:
    """A trials.jsonl record from what the inbox collected for one trial."""
    from trainer import metrics
    from trainer.train import run_from_dict

    runs = []
    for k, (run, _) in enumerate(entry["runs"]):
        runs.append({**run, "run": f"{tid}-{k}"})
    last = entry.get("last_result") or {}
    partial = last.get("partial_run")
    if partial and len(runs) < options.runs:
        # Tune's scheduler stopped this run between epochs.
        k = len(runs)
        run = run_from_dict({**partial, "run": f"{tid}-{k}", "stopped_early": True})
        runs.append(run.to_dict())
    values = [r.get(options.objective) for r in runs]
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    score, score_std = metrics.mean_std(finite)
    error = entry.get("error")
    status = "ok" if finite and not error else "fail"
    if status == "fail" and not error:
        error = f"no run of the trial gave a finite {options.objective}"
    return {
        "tid": tid,
        "params": to_params(entry.get("config") or {}),
        "score": score if math.isfinite(score) else None,
        "score_std": score_std if math.isfinite(score_std) else None,
        "status": status,
        "error": error,
        "start": entry.get("start"),
        "end": entry.get("end"),
        "epochs_run": sum(int(r.get("epochs") or 0) for r in runs),
        "epochs_planned": options.epochs * options.runs,
        "worker": entry.get("worker", ""),
        "runs": runs,
    }


def hyperopt_vals(record: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """hyperopt's ``vals`` of a record's params: a choice's index, else the value."""
    vals: dict[str, Any] = {}
    for name, entry in space.items():
        if not isinstance(entry, dict):
            continue
        value = record["params"].get(name)
        if entry["dist"] == "choice":
            vals[name] = entry["options"].index(value)
        else:
            vals[name] = float(value)
    return vals


def _append_trial(
    trials: Any, tid: int, record: dict[str, Any], vals: dict[str, Any]
) -> None:
    """Add a finished trial to hyperopt's Trials, as ``fmin`` would have."""
    from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK

    if record["status"] == "ok":
        result = {"status": STATUS_OK, "loss": -record["score"], "record": record}
    else:
        result = {"status": STATUS_FAIL, "record": record}
    misc = {
        "tid": tid,
        "cmd": ("domain_attachment", "FMinIter_Domain"),
        "workdir": None,
        "idxs": {name: [tid] for name in vals},
        "vals": {name: [value] for name, value in vals.items()},
    }
    doc = trials.new_trial_docs([tid], [None], [result], [misc])[0]
    doc["state"] = JOB_STATE_DONE
    doc["book_time"] = doc["refresh_time"] = None
    trials.insert_trial_docs([doc])
    trials.refresh()


def _searcher_trials(trials: Any) -> Any:
    """A copy of the finished trials for HyperOptSearch (without the records)."""
    from hyperopt import Trials

    copy = Trials()
    docs = []
    for doc in trials.trials:
        result = {k: v for k, v in doc["result"].items() if k != "record"}
        docs.append({**doc, "result": result})
    copy.insert_trial_docs(docs)
    copy.refresh()
    return copy


# --- re-runs ---------------------------------------------------------------------


def _rerun_one(
    params: dict[str, Any],
    data_ref: list[Any],
    train: dict[str, Any],
    seed: int,
    name: str,
    threads: int,
) -> tuple[dict[str, Any] | None, bytes | None, str | None]:
    """Runs on a node: one re-run; its record, model file and error."""
    from trainer.train import TrainOptions, train_run

    _set_threads(threads)
    from trainer.model import ModelParams

    dataset = ray.get(data_ref[0])
    try:
        with tempfile.TemporaryDirectory(prefix="malpi-rerun-") as tmp:
            run_dir = Path(tmp) / "run"
            result = train_run(
                ModelParams.from_dict(params),
                dataset,
                TrainOptions(**train),
                seed=seed,
                name=name,
                run_dir=run_dir,
            )
            return result.to_dict(), (run_dir / searchdir.MODEL_FILE).read_bytes(), None
    except Exception as err:  # a failed re-run is recorded, not fatal
        return None, None, f"{type(err).__name__}: {err}"


def _rerun_top(
    path: Path,
    records: list[dict[str, Any]],
    data_ref: Any,
    options: SearchOptions,
    trial_cpus: int,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Train the top-K configurations ``rerun_runs`` times each, in parallel."""
    from trainer import metrics

    if options.top_k == 0:
        return []
    ok = [r for r in records if r["status"] == "ok" and r["score"] is not None]
    top: list[dict[str, Any]] = []
    for record in sorted(ok, key=lambda r: r["score"], reverse=True):
        if all(record["params"] != other["params"] for other in top):
            top.append(record)
        if len(top) == options.top_k:
            break
    existing = {
        r["source_tid"]: r for r in searchdir.read_jsonl(path / searchdir.RERUN_FILE)
    }
    to_rerun = [r for r in top if r["tid"] not in existing]
    reruns = [existing[r["tid"]] for r in top if r["tid"] in existing]
    if to_rerun:
        echo(
            f"re-running {len(to_rerun)} configurations with {options.rerun_runs} runs "
            "each on the cluster"
        )
        train_data = {**asdict(options.train_options(runs=1)), "save_models": True}
        task = ray.remote(num_cpus=trial_cpus)(_rerun_one)
        pending = {}
        for record in to_rerun:
            base = options.seed + RERUN_SEED_BASE + TRIAL_SEED_STRIDE * record["tid"]
            for k in range(options.rerun_runs):
                name = f"rerun{record['tid']}-{k}"
                ref = task.remote(
                    record["params"], [data_ref], train_data, base + k, name, trial_cpus
                )
                pending[ref] = (record, name)
        results: dict[int, list[tuple[str, Any, str | None]]] = {}
        for ref, (record, name) in pending.items():
            run, model, error = ray.get(ref)
            if model is not None:
                model_path = searchdir.run_model_path(path, name)
                model_path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(model_path, model)
            results.setdefault(record["tid"], []).append((name, run, error))
        for record in to_rerun:
            done = results[record["tid"]]
            runs = [run for _, run, _ in done if run is not None]
            errors = [error for _, _, error in done if error]
            values = [
                r[options.objective] for r in runs if r[options.objective] is not None
            ]
            mean, std = metrics.mean_std(values)
            finite = math.isfinite(mean)
            reruns.append(
                {
                    "params": record["params"],
                    "source_tid": record["tid"],
                    "search_score": record["score"],
                    "mean": mean if finite else None,
                    "std": std if finite else None,
                    "status": "ok" if finite else "fail",
                    "error": errors[0] if errors else None,
                    "runs": runs,
                }
            )
    reruns.sort(key=rerun_rank_key, reverse=True)
    searchdir.write_reruns(path, reruns)
    print_rerun_ranking(reruns, echo)
    return reruns


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
