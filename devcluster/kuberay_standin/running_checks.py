"""The timeouts of a Running RayJob (rayjob_controller.go@v1.7.0), pure: each updates the new status, True if it fired."""

from __future__ import annotations

import datetime as dt

from devcluster.kuberay_standin.names import (
    COMPLETE,
    FAILED,
    FAILED_JOB,
    RUNNING,
    SUBMITTER_FINISHED_TIMEOUT_SECONDS,
    TERMINAL_JOB,
    Obj,
)
from devcluster.kuberay_standin.wire import parse_rfc3339, rfc3339

GRACE_PERIOD_EXCEEDED = "JobDeploymentStatusTransitionGracePeriodExceeded"  # rayv1.JobFailedReason
STATUS_CHECK_TIMEOUT = "JobStatusCheckTimeoutExceeded"  # rayv1.JobFailedReason
FAILURE_START = "jobStatusCheckFailureStartTime"  # RayJobStatus.JobStatusCheckFailureStartTime


def _go_datetime(moment: dt.datetime) -> str:
    """Go's time.DateTime layout, "2006-01-02 15:04:05"."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def transition_grace_period(new: Obj, now: dt.datetime, grace_seconds: int) -> bool:
    """checkTransitionGracePeriodAndUpdateStatusIfNeeded: the Ray job is terminal but the deployment is still
    Running (a submitter that has not finished) `grace_seconds` after rayJobInfo.endTime -> Complete, or Failed
    when the Ray job FAILED."""
    if new.get("jobStatus") not in TERMINAL_JOB or new.get("jobDeploymentStatus") != RUNNING:
        return False
    ended = parse_rfc3339((new.get("rayJobInfo") or {}).get("endTime"))
    if ended is None or now < ended + dt.timedelta(seconds=grace_seconds):
        return False
    new.update({"jobDeploymentStatus": FAILED if new.get("jobStatus") == FAILED_JOB else COMPLETE,
                "reason": GRACE_PERIOD_EXCEEDED,
                "message": "JobDeploymentStatus does not transition to Complete or Failed within the grace period "
                           "after JobStatus reaches a terminal state."})
    return True


def status_check_timeout(new: Obj, now: dt.datetime, timeout_seconds: int) -> bool:
    """checkJobStatusCheckTimeoutAndUpdateStatusIfNeeded: GetJobInfo has failed since jobStatusCheckFailureStartTime
    for `timeout_seconds` -> Failed (JobStatusCheckTimeoutExceeded)."""
    since = parse_rfc3339(new.get(FAILURE_START))
    if since is None or now < since + dt.timedelta(seconds=timeout_seconds):
        return False
    new.update({"jobDeploymentStatus": FAILED, "reason": STATUS_CHECK_TIMEOUT,
                "message": f"Job status checks have been failing since {_go_datetime(since)}; exceeded timeout of "
                           f"{timeout_seconds}s"})
    return True


def record_status_check_failure(new: Obj, now: dt.datetime) -> bool:
    """recordJobStatusCheckFailure: stamp the first failure of GetJobInfo; True when it was stamped now."""
    if new.get(FAILURE_START):
        return False
    new[FAILURE_START] = rfc3339(now)
    return True


def submitter_finished_timeout(new: Obj, finished_at: str | None, now: dt.datetime) -> bool:
    """checkSubmitterFinishedTimeoutAndUpdateStatusIfNeeded: the submitter finished DefaultSubmitterFinishedTimeout
    (30 s) ago and the job is still Running (its Ray job did not end: one that ended with its submitter has left
    Running on the pass after) -> jobStatus FAILED, Failed."""
    finished = parse_rfc3339(finished_at)
    if finished is None or now < finished + dt.timedelta(seconds=SUBMITTER_FINISHED_TIMEOUT_SECONDS):
        return False
    new.update({"jobStatus": FAILED_JOB, "jobDeploymentStatus": FAILED, "reason": GRACE_PERIOD_EXCEEDED,
                "message": f"The RayJob submitter finished at {_go_datetime(finished)} but the ray job did not reach "
                           f"terminal state within {SUBMITTER_FINISHED_TIMEOUT_SECONDS}s"})
    return True
