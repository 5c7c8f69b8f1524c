"""A PgBouncer in transaction mode for the soak and the benchmark (Debian's ``pgbouncer``).

Its configuration, auth file and log live in a temporary directory of its own;
it listens on a free loopback port and passes every database through to the PostgreSQL of
``database_url``, which must trust local connections as CI's does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pgbouncer_start(database_url: str, *, pool_size: int = 6) -> tuple[subprocess.Popen, str, Path]:
    """Start PgBouncer; returns its process, ``database_url`` pointed at it, and its directory.

    ``pool_size`` server connections per database serve every client connection, so the many
    processes of a run share a few: any state a connection kept past a transaction would show.
    """
    if not os.path.exists(PGBOUNCER):
        raise SystemExit("pgbouncer is not installed: apt-get install pgbouncer")
    parts = urlsplit(database_url)
    user = parts.username or "postgres"
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="footprint-pgbouncer-"))
    directory.chmod(0o755)
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": port,
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": directory / "userlist.txt",
        "pool_mode": "transaction",
        "default_pool_size": pool_size,
        "max_client_conn": 1000,
        "ignore_startup_parameters": "extra_float_digits,options",
        "logfile": directory / "pgbouncer.log",
        "admin_users": user,
        "log_connections": 0,
        "log_disconnections": 0,
    }
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root; it switches to the postgres user after start-up.
        settings["user"] = "postgres"
        postgres = pwd.getpwnam("postgres")
        os.chown(directory, postgres.pw_uid, postgres.pw_gid)
        for name in ("userlist.txt",):
            os.chown(directory / name, postgres.pw_uid, postgres.pw_gid)
    config = directory / "pgbouncer.ini"
    config.write_text(
        f"[databases]\n* = host={parts.hostname or '127.0.0.1'} port={parts.port or 5432}\n"
        "[pgbouncer]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
    )
    process = subprocess.Popen(
        [PGBOUNCER, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = directory / "pgbouncer.log"
            raise SystemExit(
                "pgbouncer did not start:\n" + (log.read_text() if log.exists() else "")
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    netloc = f"{user}@127.0.0.1:{port}"
    return process, urlunsplit(parts._replace(netloc=netloc)), directory
