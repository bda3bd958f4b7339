"""The warehouse under contention: another process (or thread) holding the DuckDB lock.

Real processes: a child opens the file read-write and holds it for a couple of
seconds while this process opens it (read-only and read-write). DuckDB refuses
both while the child holds it ("Could not set lock on file ... Conflicting lock
is held in ... (PID n)"); ``Warehouse.connect`` must wait it out with backoff.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ml_core.data.warehouse import Warehouse
from ml_core.errors import WarehouseError

HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS held (who VARCHAR)")
con.execute("INSERT INTO held VALUES ('child')")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
print("released", flush=True)
"""


@contextmanager
def lock_held(path: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """A child process holding a read-write connection on ``path`` for ``seconds``."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip() == "holding", child.communicate(timeout=30)[1][-2000:]
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


def test_reader_and_writer_wait_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=30)
    with wh.connect():
        pass  # the schema exists before the child takes the file
    with lock_held(wh.path, 2.0) as child:
        t0 = time.monotonic()
        with wh.connect(read_only=True) as con:
            waited_ro = time.monotonic() - t0
            assert con.execute("SELECT who FROM held").fetchall() == [("child",)]
        assert child.wait(timeout=30) == 0  # the child finished its hold normally
    assert waited_ro > 0.5  # it really was locked out, and got in once the child let go

    with lock_held(wh.path, 2.0):
        t0 = time.monotonic()
        with wh.connect() as con:
            waited_rw = time.monotonic() - t0
            con.execute("INSERT INTO held VALUES ('parent')")
        with wh.connect(read_only=True) as con:
            rows = con.execute("SELECT who FROM held ORDER BY who").fetchall()
    assert waited_rw > 0.5
    assert rows == [("child",), ("child",), ("parent",)]


def test_lock_held_past_the_timeout_names_the_path_and_the_holder_pid(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=0.6)
    with lock_held(wh.path, 30.0) as child:
        for read_only in (True, False):
            t0 = time.monotonic()
            with (
                pytest.raises(WarehouseError, match=f"held by PID {child.pid}") as err,
                wh.connect(read_only=read_only),
            ):
                pass
            assert time.monotonic() - t0 < 5.0  # bounded by the timeout, not the holder
            assert str(wh.path) in str(err.value)
            assert f"({'read-only' if read_only else 'read-write'} open" in str(err.value)
            assert "stayed locked for 0.6s" in str(err.value)


def test_threads_of_one_process_wait_for_each_other(tmp_path: Path) -> None:
    """A read-only open while another thread writes ("different configuration") waits too."""
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=30)
    opened, release = threading.Event(), threading.Event()

    def writer() -> None:
        with wh.connect() as con:
            con.execute("CREATE TABLE t AS SELECT 42 AS x")
            opened.set()
            release.wait(timeout=30)

    thread = threading.Thread(target=writer)
    thread.start()
    assert opened.wait(timeout=30)
    threading.Timer(1.0, release.set).start()
    t0 = time.monotonic()
    with wh.connect(read_only=True) as con:
        assert con.execute("SELECT x FROM t").fetchone() == (42,)
    thread.join(timeout=30)
    assert time.monotonic() - t0 > 0.5


def test_other_mode_nested_in_the_same_thread_fails_at_once(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=30)
    t0 = time.monotonic()
    with (
        wh.connect(),
        pytest.raises(WarehouseError, match="this thread holds a connection"),
        wh.connect(read_only=True),
    ):
        pass
    assert time.monotonic() - t0 < 5.0
    with wh.connect(read_only=True) as con:  # and the counter was released
        assert con.execute("SELECT 1").fetchone() == (1,)


def test_a_file_that_is_not_a_database_is_not_retried(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    path.write_text("not a database " * 20)
    t0 = time.monotonic()
    with (
        pytest.raises(WarehouseError, match="not a valid DuckDB database"),
        Warehouse(path, lock_timeout_s=30).connect(read_only=True),
    ):
        pass
    assert time.monotonic() - t0 < 5.0
