"""Entry point of rayqueue-extender: parse the settings once, then serve."""

from __future__ import annotations

import asyncio
import logging
import sys

from extender.settings import SettingsError, parse_settings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:
        print(f"rayqueue-extender: bad settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from extender.app import run

    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
