"""Where the staffing search's runs go: processes of this machine, or a Dask cluster.

    runner = LocalRunner(processes=2)        # `hospital bench`'s machinery: bench.run_jobs
    runner = DaskRunner("tcp://host:8786")   # an existing cluster (pip install .[dask])
    runner = DaskRunner(None, workers=2)     # a local cluster of two worker processes
    records = runner.run(jobs, run_staffing_job)
    runner.close()

Each run is independent of the others (a candidate staffing and a seed), so a runner only
maps a function over jobs and gives the records back in the jobs' order. The search itself
stays in one process and decides the same whatever runs its jobs: a record depends only on
its job.

Dask rather than Ray for the optional engine: its cluster is plain Python processes (a
scheduler and workers, with nannies), started in a second by `LocalCluster` and light on a
2-core machine, where Ray starts its own object store, control store and dashboard
processes and ships a large wheel. A Dask cluster's workers must be able to import this
project (install it on them as on this machine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from scheduler.bench import Job, job_pool, run_jobs

Worker = Callable[[Job], dict[str, Any]]


class Runner(Protocol):
    name: str

    def run(self, jobs: list[Job], worker: Worker) -> list[dict[str, Any]]: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class LocalRunner:
    """`bench.run_jobs`: `processes` worker processes of this machine at once. Each serves
    several jobs in turn (the search's runs are short, and its figures need no process of
    their own, as `hospital bench`'s peak memory does)."""

    name = "local"

    def __init__(self, processes: int = 1):
        self.processes = max(1, processes)
        self.pool: Any = None  # started with the first jobs, kept until `close`

    def run(self, jobs: list[Job], worker: Worker) -> list[dict[str, Any]]:
        if self.pool is None:
            self.pool = job_pool(self.processes)
        records = run_jobs(jobs, self.processes, worker=worker, pool=self.pool)
        by_key = {_key(job): n for n, job in enumerate(jobs)}
        return sorted(records, key=lambda r: by_key[_record_key(r)])

    def describe(self) -> str:
        return f"local, {self.processes} process{'es' if self.processes > 1 else ''}"

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None


class EngineError(RuntimeError):
    """The distributed engine is not installed or cannot be reached; one line."""


class DaskRunner:
    """The jobs on a Dask cluster: the one at `address`, or a `LocalCluster` of `workers`
    processes started here (and closed with the runner)."""

    name = "dask"

    def __init__(self, address: str | None = None, workers: int = 2):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise EngineError(
                "--engine dask needs Dask's distributed scheduler: pip install '.[dask]'"
            ) from None
        self.cluster = None
        try:
            if address:
                self.client = Client(address, timeout="10s")
            else:
                self.cluster = LocalCluster(
                    n_workers=max(1, workers),
                    threads_per_worker=1,  # a run holds the interpreter's lock throughout
                    processes=True,
                    dashboard_address=None,
                )
                self.client = Client(self.cluster)
        except OSError as exc:
            raise EngineError(f"cannot reach the Dask scheduler at {address}: {exc}") from None

    def workers(self) -> int:
        return len(self.client.scheduler_info()["workers"])

    def describe(self) -> str:
        where = (
            "a local cluster"
            if self.cluster is not None
            else self.client.scheduler_info()["address"]
        )
        return f"dask, {where} of {self.workers()} workers"

    def run(self, jobs: list[Job], worker: Worker) -> list[dict[str, Any]]:
        futures = self.client.map(worker, jobs, pure=False)
        return list(self.client.gather(futures))

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _key(job: Job) -> tuple[Any, ...]:
    return (job.scenario, job.policy, job.seed, getattr(job, "candidate", 0))


def _record_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["scenario"], record["policy"], record["seed"], record.get("candidate", 0))


def runner(engine: str, processes: int = 1, address: str | None = None) -> Runner:
    """The runner of `--engine local|dask` (`address`: an existing Dask scheduler)."""
    if engine == "local":
        return LocalRunner(processes)
    if engine == "dask":
        return DaskRunner(address, processes)
    raise EngineError(f"--engine: expected local or dask, got {engine!r}")
