"""``make run``: prepare the database, then run the servers until Ctrl-C.

Runs under ``quickpe.embedded run`` so DATABASE_URL/REDIS_URL are set (embedded or yours).
Each server is a child process; Ctrl-C or SIGTERM stops them all, and ``embedded run`` then
stops the databases it started.
"""

import os
import signal
import subprocess
import sys
import time

HOST = os.environ.get("QUICKPE_HOST", "127.0.0.1")
PORT = os.environ.get("QUICKPE_PORT", "8000")
PY = sys.executable


def manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], check=True)  # noqa: S603


def servers() -> dict[str, list[str]]:
    # Sync workers, cores + 1: `make bench` measured them fastest on 2 cores; with gthread one
    # worker took every keep-alive connection while the other idled.
    workers = os.environ.get("WEB_WORKERS", str((os.cpu_count() or 1) + 1))
    threads = os.environ.get("WEB_THREADS", "1")
    return {
        "web": [
            PY,
            "-m",
            "gunicorn",
            "quickpe.wsgi:application",
            "--bind",
            f"{HOST}:{PORT}",
            "--workers",
            workers,
            "--threads",
            threads,
            "--worker-class",
            "sync" if threads == "1" else "gthread",
            "--access-logfile",
            "-",
            # Path without the query string: searches and tokens must never reach the logs.
            "--access-logformat",
            '%(h)s "%(m)s %(U)s" %(s)s %(b)sB %(M)sms',
        ],
    }


def main() -> int:
    manage("migrate", "--no-input", "-v", "0")
    manage("collectstatic", "--no-input", "-v", "0")
    manage("seed_demo")
    children = {name: subprocess.Popen(command) for name, command in servers().items()}  # noqa: S603
    base = f"http://{HOST}:{PORT}"
    sys.stdout.write(
        f"\nQuickPe is running:\n"
        f"  API      {base}/api/v1/\n"
        f"  API docs {base}/api/docs/\n"
        f"  Admin    {base}/admin/\n"
        f"  Health   {base}/health/ready\n"
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
