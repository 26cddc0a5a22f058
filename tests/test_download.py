"""`upt download` against a local HTTP server that misbehaves on request (no internet needed)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from upt.cli import main
from upt.data.download import COLUMNS, download, fetch, read_url_table, select_rows
from upt.errors import UptError

pytestmark = pytest.mark.timeout(30)

DATA = {"a.hdf5": bytes(range(256)) * 1000, "b.hdf5": b"second file " * 5000}


class _Handler(BaseHTTPRequestHandler):
    """Serves ``DATA`` with Range support; each request takes the next mode planned for its path."""

    def do_GET(self):
        name = self.path.lstrip("/")
        rng = self.headers.get("Range")
        self.server.requests.append((name, rng))
        plan = self.server.plans[name]
        mode = plan.pop(0) if len(plan) > 1 else plan[0]  # the last mode repeats
        if mode.isdigit():
            self.send_error(int(mode))
            return
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and mode != "norange" else 0
        body = DATA[name][start:]
        if mode == "corrupt":
            body = b"X" + body[1:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(DATA[name]) - 1}/{len(DATA[name])}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "stall":  # headers, then nothing for longer than the client's timeout
            time.sleep(0.5)
        elif mode == "truncate":  # half the promised bytes, then HTTP/1.0 closes the connection
            self.wfile.write(body[: len(body) // 2])
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A server on 127.0.0.1 (ephemeral port), stopped after the test."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.requests, srv.plans = [], defaultdict(lambda: ["good"])
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def table(server, tmp_path):
    """A URL table pointing at ``server``; returns its path."""
    path = tmp_path / "urls.csv"
    pd.DataFrame([{"PDE": "Burgers", "Filename": name, "URL": server.url + name, "Path": "1D/Burgers/Train/",
                   "MD5": hashlib.md5(data).hexdigest()} for name, data in DATA.items()]).to_csv(path, index=False)
    return path


@pytest.fixture
def sleeps():
    """Records back-off delays instead of sleeping."""
    return []


def _get(table, root, sleeps, files=("a.hdf5",), retries=5):
    return download("burgers", root, files=list(files), url_table=table, retries=retries, sleep=sleeps.append)


def test_good_download(server, table, tmp_path, sleeps):
    paths = download("Burgers", tmp_path / "root", url_table=table, sleep=sleeps.append)
    assert paths == [tmp_path / "root/1D/Burgers/Train" / name for name in DATA]
    assert [p.read_bytes() for p in paths] == list(DATA.values())
    assert not list((tmp_path / "root").rglob("*.part"))
    assert sleeps == []


@pytest.mark.parametrize("status", ["503", "429"])
def test_intermittent_errors_retried_with_growing_backoff(server, table, tmp_path, sleeps, status):
    server.plans["a.hdf5"] = [status, status, status, "good"]
    [path] = _get(table, tmp_path, sleeps)
    assert path.read_bytes() == DATA["a.hdf5"]
    assert len(server.requests) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_truncated_body_resumes_with_range(server, table, tmp_path, sleeps):
    server.plans["a.hdf5"] = ["truncate", "good"]
    [path] = _get(table, tmp_path, sleeps)
    assert path.read_bytes() == DATA["a.hdf5"]
    assert server.requests == [("a.hdf5", None), ("a.hdf5", f"bytes={len(DATA['a.hdf5']) // 2}-")]
    assert not path.with_name("a.hdf5.part").exists()


def test_timeout_mid_body_resumes(server, table, tmp_path, sleeps):
    server.plans["a.hdf5"] = ["stall", "good"]
    url, md5 = server.url + "a.hdf5", hashlib.md5(DATA["a.hdf5"]).hexdigest()
    path = fetch(url, tmp_path / "a.hdf5", md5, sleep=sleeps.append, timeout=0.1)
    assert path.read_bytes() == DATA["a.hdf5"]
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_server_ignoring_range_restarts_from_zero(server, table, tmp_path, sleeps):
    part = tmp_path / "1D/Burgers/Train/a.hdf5.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from an earlier run")
    server.plans["a.hdf5"] = ["norange"]
    [path] = _get(table, tmp_path, sleeps)
    assert path.read_bytes() == DATA["a.hdf5"]
    assert server.requests == [("a.hdf5", f"bytes={len(b'stale bytes from an earlier run')}-")]


def test_corrupt_download_is_deleted(server, table, tmp_path, sleeps):
    server.plans["a.hdf5"] = ["corrupt"]
    with pytest.raises(UptError, match=r"a\.hdf5: MD5 mismatch.*expected [0-9a-f]{32}, got [0-9a-f]{32}"):
        _get(table, tmp_path, sleeps)
    assert not [p for p in tmp_path.rglob("a.hdf5*")]


def test_persistent_503_gives_up_after_retries(server, table, tmp_path, sleeps):
    server.plans["a.hdf5"] = ["503"]
    with pytest.raises(UptError, match=r"a\.hdf5: giving up after 3 tries; last: HTTP 503"):
        _get(table, tmp_path, sleeps, retries=3)
    assert len(server.requests) == 3 and sleeps == [1.0, 2.0]


def test_404_fails_at_once(server, table, tmp_path, sleeps):
    server.plans["a.hdf5"] = ["404"]
    with pytest.raises(UptError, match=r"a\.hdf5: .* HTTP 404"):
        _get(table, tmp_path, sleeps)
    assert len(server.requests) == 1 and sleeps == []


def test_verified_file_is_not_requested(server, table, tmp_path, sleeps):
    _get(table, tmp_path, sleeps)
    server.requests.clear()
    [path] = _get(table, tmp_path, sleeps)
    assert server.requests == [] and path.read_bytes() == DATA["a.hdf5"]


def test_complete_partial_file_is_not_requested(server, table, tmp_path, sleeps):
    part = tmp_path / "1D/Burgers/Train/a.hdf5.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA["a.hdf5"])
    [path] = _get(table, tmp_path, sleeps)
    assert server.requests == [] and path.read_bytes() == DATA["a.hdf5"] and not part.exists()


def test_mismatching_present_file_is_kept(server, table, tmp_path, sleeps):
    path = tmp_path / "1D/Burgers/Train/a.hdf5"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"user data")
    with pytest.raises(UptError, match="a.hdf5 exists but its MD5"):
        _get(table, tmp_path, sleeps)
    assert path.read_bytes() == b"user data" and server.requests == []


def test_unknown_pde_and_file(table, tmp_path):
    with pytest.raises(UptError, match="unknown PDE 'Heat'.*Burgers"):
        download("Heat", tmp_path, url_table=table)
    with pytest.raises(UptError, match="no file c.hdf5 for PDE Burgers; available: a.hdf5, b.hdf5"):
        download("Burgers", tmp_path, files=["c.hdf5"], url_table=table)


def test_bad_table_columns(tmp_path):
    path = tmp_path / "urls.csv"
    path.write_text("PDE,Filename,Link,Path,MD5\n")
    with pytest.raises(UptError, match="urls.csv lacks column.s. URL"):
        read_url_table(path)


def test_cli_reports_mismatch_on_one_line(server, table, tmp_path, capsys):
    server.plans["a.hdf5"] = ["corrupt"]
    argv = ["download", "--pde", "Burgers", "--root", str(tmp_path), "--files", "a.hdf5", "--url-table", str(table)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: a.hdf5: MD5 mismatch")


def test_shipped_table():
    table = read_url_table()
    assert list(table.columns) == COLUMNS and len(table) > 300
    assert table["MD5"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert len(select_rows(table, "burgers")) > 0
