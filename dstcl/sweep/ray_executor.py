"""Run jobs as Ray tasks, on a local Ray instance or an existing cluster (``--address``).

Each run is one Ray task that asks for its CPUs and GPUs, so Ray's scheduler places it (and sets
``CUDA_VISIBLE_DEVICES`` for it); the task starts the same ``dstcl run`` subprocess as the local
executor, writing into the shared output folder, which must be mounted at the same path on every
node. Ray is an optional extra, imported only here.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..errors import DstclError
from .grid import check_resource
from .jobs import Job, Outcome, execute_job


class RayUnavailable(DstclError):
    """Ray is not installed or the cluster cannot be reached."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "--executor ray needs Ray, which is not installed. Install it with: pip install 'dstcl[ray]' "
            "(or pip install 'ray>=2'), or run the sweep on this machine with --executor local."
        ) from None
    return ray


def run_ray(
    jobs: Sequence[Job],
    *,
    address: str | None = None,
    cpus: float = 1.0,
    gpus: float | None = None,
    on_start: Callable[[Job], None] = lambda job: None,
    on_done: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Submit every job as a Ray task and collect the outcomes as they finish.

    Uses the Ray instance already initialised in this process if there is one; else connects to
    ``address`` (``auto`` = the running cluster) or starts a local instance, and shuts it down at the end.
    ``gpus=None`` gives each CUDA-capable run one GPU when the cluster has GPUs, else none.
    """
    for flag, kind, value in (("cpus", "cpus", cpus), ("gpus", "gpus", gpus)):
        message = None if value is None else check_resource(kind, value, f"{flag} per run")
        if message:
            raise DstclError(f"{message}.")
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise RayUnavailable(f"could not connect to {where}: {exc}. Start the cluster with 'ray start "
                                 "--head' (or check --address), or use --executor local.") from None
        started_here = True
    try:
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        remote = ray.remote(_execute)
        pending: dict[Any, Job] = {}
        for job in jobs:
            need_gpus = gpus if gpus is not None else (1.0 if cluster_gpus > 0 and job.uses_cuda else 0.0)
            ref = remote.options(num_cpus=cpus, num_gpus=need_gpus, max_retries=0).remote(job)
            pending[ref] = job
            on_start(job)
        outcomes: list[Outcome] = []
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a lost worker or node is one failed run
                        outcome = Outcome(job.id, job.label, "failed", message=f"Ray task failed: {type(exc).__name__}: {exc}"[:300])
                    outcomes.append(outcome)
                    on_done(outcome)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)
            raise
        return outcomes
    finally:
        if started_here:
            ray.shutdown()


def _execute(job: Job) -> Outcome:
    """The Ray task: one run as a subprocess (its thread count is in its config: the task's CPUs by default)."""
    return execute_job(job)
