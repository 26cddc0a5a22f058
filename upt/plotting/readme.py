"""Put the default run's generated tables into the README, so no number there is typed by hand.

A README block between ``<!-- generated: PATH -->`` and ``<!-- end generated -->`` is replaced by
the file PATH (relative to the repository root), e.g. ``results/figures/burgers1d/main_table.md``
written by ``upt plot``. Run by ``make readme`` after ``make all_ablations``::

    python -m upt.plotting.readme README.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from upt.atomic import atomic_output
from upt.errors import UptError

BLOCK = re.compile(r"(<!-- generated: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def splice(readme: str | Path, root: str | Path | None = None) -> list[str]:
    """Refill every generated block of ``readme`` from its file; returns the paths used."""
    readme = Path(readme)
    root = Path(root) if root is not None else readme.parent
    text, used = readme.read_text(), []

    def fill(match: re.Match) -> str:
        source = root / match["path"]
        if not source.is_file():
            raise UptError(f"{readme}: generated block needs {source}, which does not exist (run the pipeline)")
        used.append(match["path"])
        return match.group(1) + source.read_text().rstrip("\n") + "\n" + match.group(4)

    new = BLOCK.sub(fill, text)
    if new != text:
        with atomic_output(readme) as tmp:
            tmp.write_text(new)
    return used


if __name__ == "__main__":
    for path in splice(sys.argv[1] if len(sys.argv) > 1 else "README.md"):
        print(path)
