"""One comparison across datasets, for the README: ``python -m upt.plotting.comparison OUT.md
--control fno --control fno-dynamics LABEL=claims.csv ...`` writes the rows of every ``claims.csv`` whose
control is named (e.g. the UPT against both FNO sizes on each dataset), one table, and skips a
file that does not exist (a study not run), saying so on stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from upt.plotting.tables import claims_across, markdown_table
from upt.results import read_claims


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("claims", nargs="+", help="LABEL=PATH of a claims.csv")
    parser.add_argument("--control", action="append", required=True, help="a control arm (repeatable)")
    args = parser.parse_args(argv)
    tables = {}
    for entry in args.claims:
        label, sep, path = entry.partition("=")
        if not sep:
            parser.error(f"{entry!r}: expected LABEL=PATH")
        if not Path(path).is_file():
            print(f"{path}: not found, left out", file=sys.stderr)
            continue
        tables[label] = read_claims(path)
    table = claims_across(tables, args.control)
    if table.empty:
        raise SystemExit(f"no claim with control {args.control} in {list(tables) or 'any file'}")
    args.out.write_text(markdown_table(table))


if __name__ == "__main__":
    main()
