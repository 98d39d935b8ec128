"""How a benchmark command runs: Ctrl-C or SIGTERM stops the measuring, and clean-up always runs."""

import signal
import sys
from collections.abc import Callable


def _interrupted(signum, frame):
    """First Ctrl-C or SIGTERM: stop measuring. Later ones (``quickpe.embedded run`` forwards
    Ctrl-C once more) are ignored so they cannot cut the clean-up short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def run(main: Callable[[], int], *, stop_all: Callable[[], None], out, stopping: str) -> None:
    """Run ``main``, exit with its code (130 when interrupted), always calling ``stop_all``."""
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    code = 1
    try:
        code = main()
    except KeyboardInterrupt:
        out(f"\ninterrupted: {stopping}")
        code = 130
    finally:
        stop_all()
    sys.exit(code)
