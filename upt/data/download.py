"""Fetch PDEBench files: MD5-verified, atomic, resumable, retried with exponential back-off.

PDEBench files are 8-90 GB and its servers drop connections, so a download must survive being
cut off (resume from the ``.part`` file with an HTTP Range request) and must never leave a file
under its final name that Snakemake would take as done before its MD5 has been checked.

A file already present under its final name is trusted only if its MD5 matches the table; if it
does not match we raise instead of overwriting it, because it may be the user's own data (delete
it to download again).
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm import tqdm

from upt.errors import UptError

COLUMNS = ["PDE", "Filename", "URL", "Path", "MD5"]
CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough to never hold a file in memory
MAX_DELAY = 60.0  # seconds; caps the back-off so a large --retries does not wait for hours


class _Transient(Exception):
    """A failure that a later try may not meet: 5xx, 408, 429, a body cut short."""


# Network failures worth retrying. HTTPError (a URLError) is handled before these are caught.
_RETRYABLE = (_Transient, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def read_url_table(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read PDEBench's URL table (the shipped copy unless ``path`` names a mirror's) and check it.

    Everything is read as text so an MD5 made only of digits and one ``e`` is not parsed as a float.
    """
    name = path if path is not None else "the shipped pdebench_data_urls.csv"
    try:
        if path is None:
            with importlib.resources.files("upt.data").joinpath("pdebench_data_urls.csv").open() as f:
                table = pd.read_csv(f, dtype=str, keep_default_na=False)
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UptError(f"cannot read URL table {name}: {err}") from err
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise UptError(f"URL table {name} lacks column(s) {', '.join(missing)}; it needs {', '.join(COLUMNS)}")
    bad = table[~table["MD5"].str.fullmatch(r"[0-9a-fA-F]{32}")]
    if len(bad):
        raise UptError(f"URL table {name}: {bad['Filename'].iloc[0]} has no valid MD5 ({bad['MD5'].iloc[0]!r})")
    return table


def _brief(names: list[str], n: int = 8) -> str:
    """List a few names, so an error about NS_Incom's 274 files stays one readable line."""
    more = f", ... ({len(names)} in all)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def select_rows(table: pd.DataFrame, pde: str, files: list[str] | None = None) -> pd.DataFrame:
    """The rows of ``pde`` (any case), restricted to ``files`` when given, in table order."""
    rows = table[table["PDE"].str.lower() == pde.lower()]
    if rows.empty:
        raise UptError(f"unknown PDE {pde!r}; the URL table has: {_brief(sorted(table['PDE'].unique()))}")
    if files:
        unknown = [f for f in files if f not in set(rows["Filename"])]
        if unknown:
            raise UptError(f"no file {', '.join(unknown)} for PDE {pde}; available: "
                           f"{_brief(list(rows['Filename']))}")
        rows = rows[rows["Filename"].isin(files)]
    return rows


def _hash_file(path: Path, hasher, chunk: int = CHUNK):
    """Feed ``path`` to ``hasher`` chunk by chunk (files are far larger than memory)."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            hasher.update(block)
    return hasher


def md5sum(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """The hex MD5 of a file, read in chunks."""
    return _hash_file(Path(path), hashlib.md5(), chunk).hexdigest()


class _Partial:
    """The ``.part`` file and the MD5 of exactly the bytes in it, kept in step.

    Each chunk is written and hashed together, so after a failed try the hash still describes the
    file on disk and resuming never re-reads it; only a ``.part`` left by an earlier run is hashed.
    """

    def __init__(self, path: Path):
        self.path = path
        exists = path.exists()
        self.hasher = _hash_file(path, hashlib.md5()) if exists else hashlib.md5()
        self.size = path.stat().st_size if exists else 0

    def restart(self) -> None:
        """Empty the file: the server sent the whole body instead of the requested range."""
        self.path.write_bytes(b"")
        self.hasher, self.size = hashlib.md5(), 0


def _try_once(url: str, part: _Partial, name: str, timeout: float, bar: tqdm) -> None:
    """One HTTP request that appends to ``part``; raises _Transient or a network error to retry."""
    headers = {"Range": f"bytes={part.size}-"} if part.size else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code >= 500 or err.code in (408, 429):
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        if err.code == 416 and part.size:  # the .part is longer than the file: start over
            part.restart()
            raise _Transient("HTTP 416: partial file longer than the server's") from err
        raise UptError(f"{name}: {url} answered HTTP {err.code} {err.reason}") from err
    with response:
        if response.status == 206:
            if not response.headers.get("Content-Range", "").startswith(f"bytes {part.size}-"):
                raise UptError(f"{name}: {url} answered range {response.headers.get('Content-Range')!r} "
                               f"to a request from byte {part.size}")
        else:
            part.restart()
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        bar.reset(total=None if expected is None else part.size + expected)
        bar.update(part.size)
        received = 0
        with open(part.path, "ab") as f:
            while block := response.read(CHUNK):
                f.write(block)
                part.hasher.update(block)
                part.size += len(block)
                received += len(block)
                bar.update(len(block))
    if expected is not None and received < expected:
        raise _Transient(f"connection closed after {received} of {expected} bytes")


def fetch(url: str, dest: str | os.PathLike, md5: str, retries: int = 5, *,
          sleep: Callable[[float], None] = time.sleep, backoff: float = 1.0, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``; rename only once the MD5 matches.

    ``retries`` is the number of tries in all. Between tries we sleep ``backoff * 2**k`` seconds
    (capped at MAX_DELAY) and resume from what is on disk; after the last try the ``.part`` is
    kept so the next run resumes it. A verified ``dest`` (or complete ``.part``) is not requested.
    """
    dest, md5 = Path(dest), md5.lower()
    if retries < 1:
        raise UptError(f"{dest.name}: retries must be at least 1, not {retries}")
    if dest.exists():
        found = md5sum(dest)
        if found != md5:
            raise UptError(f"{dest} exists but its MD5 is {found}, not {md5}; delete it to download again")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _Partial(dest.with_name(dest.name + ".part"))
    if not (part.size and part.hasher.hexdigest() == md5):  # a complete .part needs no request
        with tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, disable=None) as bar:
            for attempt in range(retries):
                if attempt:
                    sleep(min(backoff * 2 ** (attempt - 1), MAX_DELAY))
                try:
                    _try_once(url, part, dest.name, timeout, bar)
                    break
                except _RETRYABLE as err:
                    cause = err
            else:
                raise UptError(f"{dest.name}: giving up after {retries} tries; last: {cause}")
    found = part.hasher.hexdigest()
    if found != md5:
        part.path.unlink()
        raise UptError(f"{dest.name}: MD5 mismatch (expected {md5}, got {found}); download deleted")
    os.replace(part.path, dest)
    return dest


def _destination(root: Path, row: pd.Series) -> Path:
    """``root/<Path>/<Filename>``, refusing a (mirror) table whose names would escape ``root``."""
    relative = Path(row["Path"]) / row["Filename"]
    if relative.is_absolute() or ".." in relative.parts:
        raise UptError(f"URL table entry {row['Filename']} has a path outside the root: {relative}")
    return root / relative


def download(pde: str, root: str | os.PathLike, files: list[str] | None = None,
             url_table: str | os.PathLike | None = None, retries: int = 5, *,
             sleep: Callable[[float], None] = time.sleep) -> list[Path]:
    """Fetch the files of ``pde`` (or just ``files``) into ``root``; return their paths."""
    rows = select_rows(read_url_table(url_table), pde, files)
    return [fetch(row["URL"], _destination(Path(root), row), row["MD5"], retries, sleep=sleep)
            for _, row in rows.iterrows()]
