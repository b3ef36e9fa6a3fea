"""Entry point of rayqueue-extender."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("rayqueue-extender: not implemented yet (see the project's issues)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
