"""``make run``: prepare the database, then run the servers until Ctrl-C.

Runs under ``quickpe.embedded run`` so DATABASE_URL/REDIS_URL are set (embedded or yours).
Each server is a child process; Ctrl-C or SIGTERM stops them all, and ``embedded run`` then
stops the databases it started.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from quickpe.daphne_tuning import DAPHNE_OPTIONS

HOST = os.environ.get("QUICKPE_HOST", "127.0.0.1")
PORT = os.environ.get("QUICKPE_PORT", "8000")
WS_PORT = os.environ.get("QUICKPE_WS_PORT", "8001")
PY = sys.executable
BASE_DIR = Path(__file__).resolve().parent.parent


def manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], check=True)  # noqa: S603


def servers() -> dict[str, list[str]]:
    # Sync workers, two per core: `make bench` measured them fastest on 2 cores (4 beat 3 and 2
    # at every concurrency, 2026-12-07); with gthread one worker took every keep-alive
    # connection while the other idled.
    workers = os.environ.get("WEB_WORKERS", str(2 * (os.cpu_count() or 1)))
    threads = os.environ.get("WEB_THREADS", "1")
    web = "gunicorn -c python:quickpe.gunicorn_conf quickpe.wsgi:application"
    web += f" --bind {HOST}:{PORT} --workers {workers}"
    web += f" --threads {threads} --worker-class {'sync' if threads == '1' else 'gthread'}"
    # Access log without query strings: searches and tokens must never reach the logs.
    access_log = [
        "--access-logfile",
        "-",
        "--access-logformat",
        '%(h)s "%(m)s %(U)s" %(s)s %(M)sms',
    ]
    # daphne serves the WebSockets; it logs paths without query strings. Its options (pings)
    # are the ones `make bench` measured, see quickpe/daphne_tuning.py.
    ws = f"daphne -b {HOST} -p {WS_PORT} {' '.join(DAPHNE_OPTIONS)} quickpe.asgi:application"
    # Background jobs, with the periodic ones (-B) in the same process for development.
    worker = "celery -A quickpe worker -B --loglevel INFO"
    worker += f" --concurrency {os.environ.get('WORKER_CONCURRENCY', '2')}"
    return {
        "web": [PY, "-m", *web.split(), *access_log],
        "ws": [PY, "-m", *ws.split()],
        "worker": [PY, "-m", *worker.split()],
    }


def main() -> int:
    # What /api/v1/realtime advertises follows the port daphne listens on here.
    os.environ.setdefault("QUICKPE_WEBSOCKET_URL", f"ws://{HOST}:{WS_PORT}/ws/events/")
    # The pages' origin, from which their session cookie may open a socket on daphne's port.
    pages = {HOST, "localhost"} if HOST == "127.0.0.1" else {HOST}
    origins = ",".join(f"http://{host}:{PORT}" for host in sorted(pages))
    os.environ.setdefault("CSRF_TRUSTED_ORIGINS", origins)
    os.environ.setdefault("LOG_FORMAT", "console")
    # Metrics of all the processes below add up in /metrics (quickpe/metrics.py); a fresh
    # folder each run, as each run's processes are new.
    metrics_dir = Path(os.environ.get("QUICKPE_DATA_DIR", BASE_DIR / ".data")) / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    manage("migrate", "--no-input", "-v", "0")
    manage("collectstatic", "--no-input", "-v", "0")
    manage("seed_demo")
    children = {name: subprocess.Popen(command) for name, command in servers().items()}  # noqa: S603
    base = f"http://{HOST}:{PORT}"
    sys.stdout.write(
        f"\nQuickPe is running:\n"
        f"  Open     {base}/  (sign in with a demo account above)\n"
        f"  API      {base}/api/v1/\n"
        f"  API docs {base}/api/docs/\n"
        f"  Admin    {base}/admin/\n"
        f"  Health   {base}/health/ready\n"
        f"  Metrics  {base}/metrics\n"
        f"  Events   ws://{HOST}:{WS_PORT}/ws/events/?token=<access JWT>\n"
        f"Press Ctrl-C to stop everything.\n\n"
    )
    sys.stdout.flush()

    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children.values()):
        time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    for child in children.values():
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
