"""Atomic file output: nothing appears under its final name until it is complete.

Every command writes through :func:`atomic_output`, so a job killed half-way (Ctrl-C, Slurm
pre-emption, a bad input found late) leaves no file that Snakemake or a user would take as done.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name keeps the suffix (``x.nc`` -> ``.x.nc.<id>.tmp.nc``) so libraries that pick a
    format from the extension still work. On any exception the temporary file is removed and the
    exception propagates; an existing file at ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
