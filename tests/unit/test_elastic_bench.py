"""bench/elastic.py in a short run: shrink-first loses at most half the worker-time of whole-job reclaim on the
same trace, restarts fewer jobs, and keeps the guaranteed claimants' median wait (issue 21 item 5)."""

from __future__ import annotations

from bench.elastic import compare


def test_shrink_first_loses_at_most_half_the_worker_time_of_whole_job_reclaim_and_no_claimant_waits_longer() -> None:
    report = compare(hours=24.0)
    shrink, whole = report["runs"]
    assert report["lost_ratio"] <= 0.5, report
    assert shrink["jobs_restarted"] < whole["jobs_restarted"] and shrink["workers_removed"] > 0
    assert shrink["claimant_median_wait_s"] <= whole["claimant_median_wait_s"]
    assert shrink["claimants"] == whole["claimants"] > 50
