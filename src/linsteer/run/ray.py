"""Sweeps on a Ray cluster: the sweep's task splits shared out to workers, one model load each.

The unit of work is the sweep's *group* (every condition of one task split, or the neutral-text
side effects): the same unit :func:`linsteer.sweep.run.run_sweep` commits to the SQLite store.
Each Ray worker (an actor, one per GPU on a GPU cluster, else one per CPU) loads the model once
and runs the unchanged ``run_sweep`` against a stand-in store that reports every group but its
assigned one as done and hands the written group back instead of storing it. The driver alone
writes to the run's one SQLite store, group by group, so

- a resumed run (``--ray`` or not) skips the groups already stored, and the results are the rows an
  uninterrupted single-process run writes;
- a worker that dies (killed, node lost) loses only its group in flight: the driver starts a new
  worker and gives the group to the next free one.

With unit ``ppl`` the first worker calibrates the strengths once; the driver stores them in the
run (as the single-process sweep does) and every worker reuses them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from linsteer.errors import LinsteerError
from linsteer.extract.controls import Control
from linsteer.model.load import load_model
from linsteer.results.table import summarize
from linsteer.run.config import make_config
from linsteer.run.lock import run_lock
from linsteer.run.stages import Run, plan_sweep, save_controls
from linsteer.score.records import ItemResult
from linsteer.steer.setting import SettingKey
from linsteer.sweep.run import SweepSpec, run_sweep
from linsteer.sweep.store import ResultStore, SideEffect, TaskSplit, store_path

Say = Callable[[str], None]


@dataclass
class GroupResult:
    """What ``run_sweep`` wrote for one group, carried back to the driver."""

    group: str
    model: str
    cells: list[tuple[TaskSplit, SettingKey, list[ItemResult]]]
    neutral: list[tuple[SettingKey, SideEffect]]
    seconds: float
    tokens: int
    flops: float


@dataclass
class CaptureStore:
    """A stand-in for :class:`ResultStore` inside a worker: every group except ``only`` counts as
    stored (``only=None``: all of them, which lists the sweep's groups without running any), and
    ``write_group`` is captured instead of written."""

    only: str | None
    meta: dict[str, str] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    written: list[GroupResult] = field(default_factory=list)
    new_meta: dict[str, str] = field(default_factory=dict)

    def has_group(self, group_key: str) -> bool:
        self.seen.append(group_key)
        return group_key != self.only

    def write_group(self, group_key: str, model: str,
                    cells: Sequence[tuple[TaskSplit, SettingKey, Sequence[ItemResult]]], *,
                    neutral: Sequence[tuple[SettingKey, SideEffect]] = (), seconds: float,
                    tokens: int, flops: float) -> None:
        self.written.append(GroupResult(group_key, model,
                                        [(place, key, list(rows)) for place, key, rows in cells],
                                        list(neutral), seconds, tokens, flops))

    def get_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self.meta[key] = value
        self.new_meta[key] = value


class SweepWorker:
    """One Ray worker: loads the model once, then runs groups on request."""

    def __init__(self, model: str, dtype: str | None, device: str | None) -> None:
        start = time.perf_counter()
        self.lm = load_model(model, dtype=dtype, device=device)
        self.load_seconds = time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        return {"name": self.lm.name, "fingerprint": self.lm.fingerprint, "n_layers": self.lm.n_layers,
                "pid": os.getpid(), "load_seconds": self.load_seconds}

    def groups(self, controls: list[Control], spec: SweepSpec,
               meta: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The sweep's group keys in order (and any calibration it stored on the way)."""
        store = CaptureStore(None, dict(meta))
        run_sweep(self.lm, controls, spec, store)
        return store.seen, store.new_meta

    def run_group(self, controls: list[Control], spec: SweepSpec, meta: dict[str, str],
                  group: str) -> GroupResult:
        store = CaptureStore(group, dict(meta))
        run_sweep(self.lm, controls, spec, store)
        if len(store.written) != 1:
            raise LinsteerError(f"the worker ran {len(store.written)} groups for one request")
        return store.written[0]


@dataclass
class RayReport:
    """What a Ray sweep did: groups run and stored, workers started and lost, timings."""

    groups: int = 0
    ran: int = 0
    workers: int = 0
    restarts: int = 0
    load_seconds: list[float] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # worker processes, restarted ones appended
    seconds: float = 0.0  # wall time of the whole call, worker start and model loads included
    compute_seconds: float = 0.0  # the groups' own run time inside the workers, summed
    fingerprint: str = ""


def init_ray(address: str | None, num_cpus: int | None = None) -> Any:
    """Connect to ``address`` (``auto``, ``ray://host:10001``, ``host:6379``) or start a local cluster."""
    try:
        import ray
    except ImportError as exc:
        raise LinsteerError("--ray needs Ray: pip install 'linsteer[ray]'") from exc
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return ray


def run_sweep_ray(
    model: str,
    controls: Sequence[Control],
    spec: SweepSpec,
    store: ResultStore,
    *,
    dtype: str | None = None,
    device: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    settings: dict[str, Any] | None = None,
    say: Say | None = None,
    on_result: Callable[[GroupResult, RayReport], None] | None = None,
) -> RayReport:
    """Run the sweep of ``controls`` x ``spec`` on ``model`` across Ray workers into ``store``.

    ``workers`` defaults to the cluster's GPUs (one worker per GPU) or else its CPUs. ``settings``
    (with the worker's fingerprint added) are checked against the store as a resumed run does.
    ``on_result(result, report)`` is called after each stored group (tests use it to kill a worker).
    """
    ray = init_ray(address)
    from ray.exceptions import ActorDiedError, RayActorError

    tell = say or (lambda _msg: None)
    start = time.perf_counter()
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    count = workers or max(1, gpus or int(resources.get("CPU", 1)))
    options = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1}
    actor_cls = ray.remote(max_restarts=0)(SweepWorker).options(**options)

    def start_worker() -> Any:
        return actor_cls.remote(model, dtype, device if not gpus else "cuda")

    actors = [start_worker() for _ in range(count)]
    report = RayReport(workers=count)
    infos = ray.get([a.info.remote() for a in actors])
    report.load_seconds = [i["load_seconds"] for i in infos]
    report.pids = [i["pid"] for i in infos]
    report.fingerprint = infos[0]["fingerprint"]
    if settings is not None:
        store.check_settings({**settings, "fingerprint": report.fingerprint})
    tell(f"ray: {count} workers loaded {infos[0]['name']} in "
         f"{max(report.load_seconds):.1f}s ({'GPU' if gpus else 'CPU'} workers)")
    controls_ref, spec_ref = ray.put(list(controls)), ray.put(spec)
    meta = {"calibration": store.get_meta("calibration")} if store.get_meta("calibration") else {}
    groups, new_meta = ray.get(actors[0].groups.remote(controls_ref, spec_ref, meta))
    for key, value in new_meta.items():
        store.set_meta(key, value)
        meta[key] = value
    todo = [g for g in groups if not store.has_group(g)]
    report.groups = len(groups)
    tell(f"ray: {len(groups) - len(todo)} of {len(groups)} groups already stored; {len(todo)} to run")
    in_flight: dict[Any, tuple[int, str]] = {}  # ref -> (actor slot, group)
    idle = list(range(count))
    while todo or in_flight:
        while todo and idle:
            slot = idle.pop()
            group = todo.pop(0)
            ref = actors[slot].run_group.remote(controls_ref, spec_ref, meta, group)
            in_flight[ref] = (slot, group)
        done, _ = ray.wait(list(in_flight), num_returns=1)
        slot, group = in_flight.pop(done[0])
        try:
            result: GroupResult = ray.get(done[0])
        except (RayActorError, ActorDiedError):
            report.restarts += 1
            if report.restarts > 3 * max(1, len(groups)):
                raise LinsteerError("ray: workers keep dying; see the Ray logs") from None
            tell(f"ray: worker {slot} died; starting a new one and redoing its group")
            actors[slot] = start_worker()
            report.pids.append(ray.get(actors[slot].info.remote())["pid"])
            todo.insert(0, group)
            idle.append(slot)
            continue
        store.write_group(result.group, result.model, result.cells, neutral=result.neutral,
                          seconds=result.seconds, tokens=result.tokens, flops=result.flops)
        report.ran += 1
        report.compute_seconds += result.seconds
        idle.append(slot)
        tell(f"ray: stored {report.ran} groups ({result.seconds:.1f}s on worker {slot})")
        if on_result is not None:
            on_result(result, report)
    for actor in actors:
        ray.kill(actor)
    report.seconds = time.perf_counter() - start
    return report


def stage_sweep_ray(run_dir: str | Path, say: Say, *, address: str | None = None, workers: int | None = None,
                    progress: bool = True) -> RayReport:
    """``linsteer sweep RUN_DIR --ray``: the run's sweep on Ray, then its tables (as the
    single-process stage writes them)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise LinsteerError(f"{run_dir} is not a run directory (no config.yaml); start one with linsteer run")
    config = make_config("quick", run_dir / "config.yaml")
    with run_lock(run_dir):  # the driver is the run directory's one writer
        return _sweep_ray_locked(Run(run_dir, config, say, progress), address, workers)


def _sweep_ray_locked(run: Run, address: str | None, workers: int | None) -> RayReport:
    run_dir, config, say = run.dir, run.config, run.say
    controls, spec = plan_sweep(run)  # the sweep `linsteer run` runs, layer scan included
    with ResultStore(store_path(run_dir)) as store:
        report = run_sweep_ray(config.model, controls, spec, store, dtype=config.dtype,
                               device=config.device, address=address, workers=workers,
                               settings={"config": asdict(config)}, say=say)
        say(f"sweep (ray): {report.ran} groups on {report.workers} workers in {report.seconds:.1f}s, "
            f"{report.restarts} worker restarts")
        summarize(store)
        store.export(run_dir / "tables")
    save_controls(run_dir, controls)
    return report
