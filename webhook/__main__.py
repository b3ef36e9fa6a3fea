"""Entry point of rayqueue-webhook: parse the settings once, then serve."""

from __future__ import annotations

import asyncio
import sys

from common.cli_settings import launch
from webhook.settings import Settings, parse_settings


def _serve(settings: Settings) -> None:
    from webhook.app import run  # after logging is set up

    asyncio.run(run(settings))


def main(argv: list[str] | None = None) -> int:
    return launch("rayqueue-webhook", sys.argv[1:] if argv is None else argv, parse_settings, _serve)


if __name__ == "__main__":
    sys.exit(main())
