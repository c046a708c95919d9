"""Runs on Celery workers (dagster-celery): the pipeline beyond one process.

With ``deploy/dagster-celery.yaml`` as the instance's ``dagster.yaml``, the daemon's run queue hands
each run to a Celery task on a Redis broker, and any number of worker processes - on this machine or
others that share the checkpoints (S3) and Dagster's PostgreSQL storage - take them one at a time:

    FRAMESEARCH_CELERY_BROKER=redis://127.0.0.1:6379/0 \\
        celery -A pipelines.celery_workers worker -Q dagster -c 1 -n w1@%h --prefetch-multiplier=1

``app`` is the workers' Celery app (dagster-celery's tasks, configured from the environment).
:class:`WorkerAwareCeleryRunLauncher` is dagster-celery's run launcher plus what run monitoring
needs to notice a worker that died: dagster-celery reports a run whose task a dead worker had
started as "running" for ever (the task's state never changes again); here a started task whose
worker no longer answers a ping is a failed run worker, which run monitoring fails and run retries
launch again - on a worker that lives. A retried video resumes from its checkpoint chunks and its
index sync is idempotent, so it ends indexed once.
"""

from __future__ import annotations

import os
from typing import Any

from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
# Celery settings both sides share: a started task records its worker (for the health check); a
# worker takes one run at a time (a run loads the model and uses the cores it is given); and a
# task is acknowledged when it ends, not when it is received. With early acknowledgement a busy
# worker still reserves the next run's task, and a worker killed mid-run takes that reservation
# with it: the run waited in STARTING until run monitoring's start timeout (300 s) failed it.
CELERY_SETTINGS: dict[str, Any] = {
    "task_track_started": True, "worker_prefetch_multiplier": 1, "task_acks_late": True, "task_default_queue": "dagster",
}


def broker_url() -> str:
    """FRAMESEARCH_CELERY_BROKER: the Redis (or RabbitMQ) URL of the broker, also the result backend."""
    return os.environ.get("FRAMESEARCH_CELERY_BROKER") or DEFAULT_BROKER


app = make_app({"broker": broker_url(), "backend": broker_url(), "include": [], "config_source": dict(CELERY_SETTINGS)})
execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)


class WorkerAwareCeleryRunLauncher(CeleryRunLauncher):
    """dagster-celery's launcher; a run whose worker no longer answers reads as failed."""

    def check_run_worker_health(self, run: Any) -> CheckRunHealthResult:
        health = super().check_run_worker_health(run)
        if health.status != WorkerStatus.RUNNING:
            return health
        info = self.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG]).info
        hostname = info.get("hostname") if isinstance(info, dict) else None
        if hostname is None:
            return health
        alive = {name for reply in (self.celery.control.ping(timeout=2.0) or []) for name in reply}
        if hostname not in alive:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"Celery worker {hostname} stopped answering while it ran this run")
        return health
