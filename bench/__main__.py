"""`python -m bench`: every benchmark in sequence (webhook, extender, growth filter, queues, memory, verbs under load, end to end,
admission on a local cluster, scheduling at 5,000 nodes); each writes
bench/results/<name>.json. `--only NAME` (repeatable) runs a subset; `--quick` passes --quick to each."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final

from bench import (
    admission,
    apiserver_webhook,
    e2e,
    elastic,
    estimate,
    extender,
    fairshare,
    forecast_cost,
    growth_filter,
    memory,
    queue_writes,
    queues,
    scheduling_5k,
    verbs_load,
    webhook,
)

Main = Callable[[Sequence[str] | None], int]
BENCHMARKS: Final[dict[str, Main]] = {
    "webhook": webhook.main,
    "extender": extender.main,
    "growth_filter": growth_filter.main,
    "queues": queues.main,
    "memory": memory.main,
    "verbs_load": verbs_load.main,
    "queue_writes": queue_writes.main,
    "e2e": e2e.main,  # type: ignore[dict-item]
    "admission": admission.main,
    "apiserver_webhook": apiserver_webhook.main,
    "estimate": estimate.main,
    "forecast_cost": forecast_cost.main,
    "scheduling_5k": scheduling_5k.main,  # type: ignore[dict-item]
    "fairshare": fairshare.main,
    "elastic": elastic.main,
}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--only", choices=list(BENCHMARKS), action="append", help="run only these (repeatable)")
    p.add_argument("--quick", action="store_true", help="a smoke run of each")
    args = p.parse_args(sys.argv[1:] if argv is None else list(argv))
    started = time.monotonic()
    spent: dict[str, float] = {}
    failed: list[str] = []
    for name, run in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"\n===== {name} =====", flush=True)
        t = time.monotonic()
        code = run(["--quick"] if args.quick else [])
        spent[name] = time.monotonic() - t
        if code != 0:
            failed.append(name)
    print("\n===== done: " + ", ".join(f"{n} {s:.0f} s" for n, s in spent.items())
          + f"; {time.monotonic() - started:.0f} s in all; results in bench/results/"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
