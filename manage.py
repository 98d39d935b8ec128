#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
    if not os.environ.get("DATABASE_URL"):
        # Development: start the embedded PostgreSQL and Redis (left running; `make stop` ends
        # them) and give this command their URLs, as `python -m quickpe.embedded run` does.
        from quickpe import embedded

        environment, _started = embedded.start_missing()
        os.environ.update(environment)
    if sys.argv[1:2] == ["migrate"]:
        # No statement limit: building an index on a large ledger takes longer than any request
        # may. Lock waits stay limited, so a migration never queues every request behind it.
        os.environ["DATABASE_STATEMENT_TIMEOUT_MS"] = "0"
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
