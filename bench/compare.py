"""Two commits' transfer benchmarks side by side, alternately, in one command.

    python -m quickpe.embedded run -- python -m bench.compare <base ref> [rounds]
    (make bench-compare BASE=<ref> ROUNDS=3)

The machine's speed moves between runs, so a number measured today is compared with the base
commit measured in the same command: the base ref is checked out in a temporary git worktree,
and ``bench.run`` (one configuration, one concurrency: BENCH_CONFIGS [sync:4], BENCH_LEVELS
[8]) runs in the base tree and in this one alternately (base, head, head, base, ...), on the same
PostgreSQL and Redis. Each run reports the API's transfers per second and its ratio to its own
tree's raw-SQL ceiling (``bench/transfer.sql``); the summary gives the medians and head/base.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def bench_once(tree: Path, env: dict[str, str]) -> dict:
    """One ``bench.run`` in ``tree``; its API row and pgbench result at the chosen level."""
    subprocess.run(
        [sys.executable, "-m", "bench.run"],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=900,
    )
    report = json.loads((tree / "bench" / "results" / "latest.json").read_text())
    level = int(env["BENCH_LEVELS"].split(",")[0])
    [api] = [row for row in report["api"] if row["concurrency"] == level]
    [ceiling] = [row for row in report["pgbench"] if row["concurrency"] == level]
    return {"api_rps": api["ok_rps"], "pgbench_tps": ceiling["tps"], "ratio": api["ratio"]}


def main() -> int:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    base_ref, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    env = {
        **os.environ,
        "BENCH_CONFIGS": os.environ.get("BENCH_CONFIGS", "sync:4"),
        "BENCH_LEVELS": os.environ.get("BENCH_LEVELS", "8"),
        "BENCH_DURATION": os.environ.get("BENCH_DURATION", "10"),
    }
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="quickpe-compare-") as temp:
        base_tree = Path(temp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(base_tree), base_ref],
            cwd=BASE_DIR,
            check=True,
        )
        try:
            out(
                f"bench.compare: {base_ref} (base) against {head} (head, with uncommitted "
                f"changes), {rounds} rounds, BENCH_CONFIGS={env['BENCH_CONFIGS']} "
                f"BENCH_LEVELS={env['BENCH_LEVELS']} BENCH_DURATION={env['BENCH_DURATION']}"
            )
            results: dict[str, list[dict]] = {"base": [], "head": []}
            for index in range(rounds):
                order = ["base", "head"] if index % 2 == 0 else ["head", "base"]
                for name in order:
                    tree = base_tree if name == "base" else BASE_DIR
                    result = bench_once(tree, env)
                    results[name].append(result)
                    out(
                        f"  round {index + 1} {name}: API {result['api_rps']:.1f} req/s, "
                        f"ceiling {result['pgbench_tps']:.1f} tps, ratio {result['ratio']:.3f}"
                    )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base_tree)], cwd=BASE_DIR, check=False
            )
    medians = {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for name, runs in results.items()
    }
    out("\nmedians            API req/s   ceiling tps   ratio")
    for name in ("base", "head"):
        row = medians[name]
        out(f"  {name:<16} {row['api_rps']:9.1f}   {row['pgbench_tps']:11.1f}   {row['ratio']:.3f}")
    out(
        f"  head / base      {medians['head']['api_rps'] / medians['base']['api_rps']:9.3f}"
        f"   {medians['head']['pgbench_tps'] / medians['base']['pgbench_tps']:11.3f}"
        f"   {medians['head']['ratio'] / medians['base']['ratio']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
