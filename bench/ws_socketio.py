"""The Socket.IO reference ``bench.ws`` measures beside QuickPe's stream: the Python side.

The reference (``bench/socketio/``, Node 20, installed by ``make bench-tools`` with ``npm ci``
into the git-ignored ``bench/socketio/node_modules``) is what the real-time design QuickPe
comes from runs: one Node process with Socket.IO 4, the Redis adapter on the same Redis and a
room per user (``server.js``), fed by a separate process through Redis (``publisher.js``,
@socket.io/redis-emitter). It never serves the product.

What it is fed is QuickPe's own traffic: before anything is measured, ``bench.ws_django record``
makes, for each level, the transfers the measured QuickPe run makes (the same senders and
recipients in the same order, seeded by the level) and keeps the frames each one put on the
streams (``recording``). The publisher emits those frames, with a fresh ``ts``, at the same
rate of transfers: same users, same events per transfer, same payloads and sizes.
"""

import json
import shutil
from pathlib import Path

from bench.run import BASE_DIR

NODE_DIR = BASE_DIR / "bench" / "socketio"
SERVER_JS = NODE_DIR / "server.js"
PUBLISHER_JS = NODE_DIR / "publisher.js"
# npm ci writes this copy of the lock file last: present and newer than package-lock.json
# means the installed packages are the pinned ones.
INSTALLED = NODE_DIR / "node_modules" / ".package-lock.json"


def unavailable() -> str | None:
    """Why the reference cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node not found (Node 20 runs the Socket.IO reference)"
    lock = NODE_DIR / "package-lock.json"
    if not INSTALLED.exists() or INSTALLED.stat().st_mtime < lock.stat().st_mtime:
        return "its packages are not installed: make bench-tools (npm ci in bench/socketio)"
    return None


def node() -> str:
    return shutil.which("node") or "node"


def server_env(env: dict[str, str], port: int, key: str) -> dict[str, str]:
    """The server's and the publisher's environment: the Redis QuickPe uses, an adapter key of
    this run's own (a Redis prefix, as QuickPe's processes get one), the access tokens' key."""
    return {
        **env,
        "SIO_PORT": str(port),
        "SIO_REDIS_URL": env["REDIS_URL"],
        "SIO_REDIS_KEY": f"{env['QUICKPE_REDIS_PREFIX']}:socket.io",
        "SIO_JWT_KEY": key,
    }


def record_command(py: str, users_json: Path, level: int, count: int, out: Path) -> list[str]:
    return [py, "-m", "bench.ws_django", "record", str(users_json), str(level), str(count)] + [
        str(out)
    ]


def publisher_command(schedule: Path, rate: float) -> list[str]:
    return [node(), str(PUBLISHER_JS), str(schedule), f"{rate:g}"]


class Recording:
    """One level's recorded transfers: ``[[user_id, frame], ...]`` per transfer, each frame as
    QuickPe's stream sent it (``id`` the user's stream seq, consecutive for each user, since
    only the recorder wrote to the streams while it ran)."""

    def __init__(self, path: Path):
        self.transfers: list[list[list]] = json.loads(path.read_text())["transfers"]

    def events_by_user(self) -> dict[int, list[int]]:
        ids: dict[int, list[int]] = {}
        for transfer in self.transfers:
            for user_id, frame in transfer:
                ids.setdefault(user_id, []).append(frame["id"])
        return ids

    def before(self) -> dict[int, int]:
        """Per user, the id before the first one the publisher will emit (compare's ``before``)."""
        return {user_id: ids[0] - 1 for user_id, ids in self.events_by_user().items()}

    def frame_bytes(self) -> float:
        """Mean size of the frames as QuickPe's consumer serialises them (``json.dumps``)."""
        sizes = [len(json.dumps(frame)) for transfer in self.transfers for _u, frame in transfer]
        return round(sum(sizes) / len(sizes), 1) if sizes else 0.0

    def write_schedule(self, path: Path, transfers: list[list[list]] | None = None) -> None:
        chosen = self.transfers if transfers is None else transfers
        path.write_text(json.dumps({"transfers": chosen}))
