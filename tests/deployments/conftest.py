"""A real Prefect server for the operations tests: started once per session on 127.0.0.1.

`prefect server start --host 127.0.0.1 --port <free>` with its own PREFECT_HOME and
sqlite database (PREFECT_SERVER_DATABASE_CONNECTION_URL) in a temp folder; ready when
`/api/health` answers. Tests talk to it inside
`prefect.settings.temporary_settings({PREFECT_API_URL: server.api_url})`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployments.servers import ManagedProcess, free_port, prefect_server


@dataclass(frozen=True)
class PrefectServer:
    url: str
    api_url: str
    home: Path
    process: ManagedProcess


@pytest.fixture(scope="session")
def live_prefect_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """A real Prefect API server for the session (~20 s to start); stopped at the end."""
    home = tmp_path_factory.mktemp("prefect-server")
    proc = prefect_server(home, "127.0.0.1", free_port(), log_dir=home / "logs")
    proc.start()
    try:
        proc.wait_ready(timeout_s=300)
        yield PrefectServer(url=proc.url, api_url=f"{proc.url}/api", home=home, process=proc)
    finally:
        proc.stop()
