"""What ``bench.ws`` prints at the end: the table, QuickPe / Socket.IO per level, and one line
per level for scripts:

    ws-vs-socketio connections=N p99_ratio=X mem_ratio=Y cpu_event_ratio=Z accept_ratio=W lost=L

Each ratio is QuickPe's value over the Socket.IO reference's at the same level in the same run:
delivery p99 (ms), memory per connection (KB), server CPU per delivered event over the server's
idle rate (ms) and connections accepted per second. L is QuickPe's lost + duplicated +
out-of-order events at that level. A ratio that cannot be formed is ``nan``.
"""

import math

from bench.run import table
from bench.ws_client import QUICKPE, SOCKETIO

TARGET_CONNECTIONS = 10_000
TARGET_P99_MS = 100.0
TITLES = {QUICKPE: "QuickPe (daphne)", SOCKETIO: "Socket.IO reference (node)"}
# Issue 16's goal, QuickPe / Socket.IO at 10,000 connections on one process.
GOAL = {"p99_ratio": 2.0, "mem_ratio": 1.5, "cpu_event_ratio": 2.0, "accept_ratio_min": 0.7}


def metrics(row: dict) -> dict:
    events = row["events"]
    return {
        "held": row["held_after"],
        "p50_ms": row["latency_ms"]["p50"],
        "p99_ms": row["latency_ms"]["p99"],
        "kb_per_connection": row["kb_per_connection"],
        "cpu_ms_per_event": row["cpu_ms_per_event"],
        "cpu_ms_per_handshake": row["connect"]["server_cpu_ms_per_handshake"],
        "accepted_per_s": row["connect"]["rate_per_s"],
        "lost_duplicated_reordered": events["lost"] + events["duplicates"] + events["out_of_order"],
    }


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return round(ours / theirs, 2)


def comparison(report: dict) -> list[dict]:
    """Per level measured on both servers: both sides' numbers and QuickPe / Socket.IO."""
    by_level: dict[int, dict[str, dict]] = {}
    for row in report["levels"]:
        by_level.setdefault(row["level"], {})[row["server"]] = row
    compared = []
    for level, rows in sorted(by_level.items()):
        if QUICKPE not in rows or SOCKETIO not in rows:
            continue
        ours, theirs = metrics(rows[QUICKPE]), metrics(rows[SOCKETIO])
        entry = {
            "level": level,
            QUICKPE: ours,
            SOCKETIO: theirs,
            "p50_ratio": _ratio(ours["p50_ms"], theirs["p50_ms"]),
            "p99_ratio": _ratio(ours["p99_ms"], theirs["p99_ms"]),
            "mem_ratio": _ratio(ours["kb_per_connection"], theirs["kb_per_connection"]),
            "cpu_event_ratio": _ratio(ours["cpu_ms_per_event"], theirs["cpu_ms_per_event"]),
            "cpu_handshake_ratio": _ratio(
                ours["cpu_ms_per_handshake"], theirs["cpu_ms_per_handshake"]
            ),
            "accept_ratio": _ratio(ours["accepted_per_s"], theirs["accepted_per_s"]),
            "lost": ours["lost_duplicated_reordered"],
        }
        entry["goal_met"] = (
            all(
                entry[name] is not None and entry[name] <= GOAL[name]
                for name in ("p99_ratio", "mem_ratio", "cpu_event_ratio")
            )
            and entry["accept_ratio"] is not None
            and entry["accept_ratio"] >= GOAL["accept_ratio_min"]
            and entry["lost"] == 0
            and ours["held"] == level
        )
        entry["line"] = line(entry)
        compared.append(entry)
    return compared


def line(entry: dict) -> str:
    def number(value: float | None) -> str:
        return "nan" if value is None or math.isnan(value) else f"{value:.2f}"

    return (
        f"ws-vs-socketio connections={entry['level']} p99_ratio={number(entry['p99_ratio'])} "
        f"mem_ratio={number(entry['mem_ratio'])} "
        f"cpu_event_ratio={number(entry['cpu_event_ratio'])} "
        f"accept_ratio={number(entry['accept_ratio'])} lost={entry['lost']}"
    )


def fmt_probe(probe: dict) -> str:
    def part(name: str, stats: dict) -> str:
        if not stats["count"]:
            return f"{name} 0"
        return f"{name} {stats['count']}x mean {stats['mean_ms']} / max {stats['max_ms']} ms"

    text = ", ".join(
        [
            part("stalls>10ms", probe["stalls_over_10ms"]),
            f"stalls>50ms {probe['stalls_over_50ms']}",
            part("gen2 GC", probe["gc_gen2"]),
            part("gen0/1 GC>5ms", probe["gc_gen01_over_5ms"]),
            part("application_checker", probe["application_checker"]),
            part("timeout_checker", probe["timeout_checker"]),
            f"objects moved to the old generation {probe['promoted_to_old']:,} (in "
            f"{probe['gc_gen1_collections']} generation-1 collections)",
        ]
    )
    if "slow_frames_over_50ms" in probe:
        text += (
            f"; frames > 50 ms: {probe['slow_frames_over_50ms']}, of which "
            f"{probe['slow_frames_during_a_stall']} waited through a stall (overlapping: "
            f"{probe['slow_frames_overlapping'] or '-'})"
        )
    return text


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _levels_table(report: dict) -> str:
    rows = []
    for row in sorted(report["levels"], key=lambda r: (r["level"], r["server"])):
        events, latency, phase = row["events"], row["latency_ms"], row["event_phase"]
        rows.append(
            [
                f"{row['level']:,}",
                row["server"],
                f"{row['held_after']:,}",
                f"{row['server_rss_mb']:.0f}",
                _fmt(row["kb_per_connection"]),
                f"{row['connect']['rate_per_s']:.0f}",
                _fmt(row["connect"]["server_cpu_ms_per_handshake"], 3),
                str(events["expected"]),
                str(events["received"]),
                str(events["lost"]),
                str(events["duplicates"]),
                str(events["out_of_order"]),
                _fmt(latency["p50"]),
                _fmt(latency["p95"]),
                _fmt(latency["p99"]),
                _fmt(latency["max"]),
                _fmt(row["cpu_ms_per_event"], 3),
                f"{phase['server_cores']:.2f}",
                _fmt(phase["rest_cores"], 2),
                ("PASS" if row["pass"] else "FAIL") if row["server"] == QUICKPE else "",
            ]
        )
    headers = ["N", "server", "held", "RSS MB", "KB/conn", "conn/s", "ms CPU/conn"]
    headers += ["expected", "received", "lost", "dup", "reorder", "p50 ms", "p95 ms", "p99 ms"]
    headers += ["max ms", "ms CPU/event", "server cores", "other cores", "target"]
    return table(headers, rows)


def _ratios_table(compared: list[dict]) -> str:
    rows = [
        [
            f"{entry['level']:,}",
            _fmt(entry["p50_ratio"], 2),
            _fmt(entry["p99_ratio"], 2),
            _fmt(entry["mem_ratio"], 2),
            _fmt(entry["cpu_event_ratio"], 2),
            _fmt(entry["cpu_handshake_ratio"], 2),
            _fmt(entry["accept_ratio"], 2),
            str(entry["lost"]),
            str(entry[SOCKETIO]["lost_duplicated_reordered"]),
            "met" if entry["goal_met"] else "not met",
        ]
        for entry in compared
    ]
    headers = ["N", "p50", "p99", "KB/conn", "CPU/event", "CPU/handshake", "accepted/s"]
    headers += ["QuickPe lost+dup+reorder", "Socket.IO lost+dup+reorder", "issue 16 goal"]
    return table(headers, rows)


def summary(report: dict) -> str:
    lines = ["", "=" * 100, "SUMMARY  WebSocket event stream: one server process", ""]
    for name, command in report["commands"].items():
        lines.append(f"{name}: {command}")
    if report.get("socketio_skipped"):
        lines.append(f"Socket.IO reference skipped: {report['socketio_skipped']}")
    lines += ["", _levels_table(report), ""]
    target = report["target"]
    lines.append(
        f"QuickPe target {TARGET_CONNECTIONS:,} connections on one daphne process, p99 delivery "
        f"< {TARGET_P99_MS:.0f} ms, 0 lost: {target['verdict']} ({target['detail']})"
    )
    lines.append(
        "RSS MB: the server's resident memory with N connections held; KB/conn: (RSS - RSS "
        "after warm-up) / N. ms CPU/conn: server CPU in the connect phase / connections made. "
        "Latency: client receive time - frame ts (QuickPe: created_at, just before commit; "
        "Socket.IO: just before the emit). ms CPU/event: server CPU in the event phase minus "
        "its idle rate, / events delivered. cores: CPU seconds / wall seconds in the event "
        "phase; other cores: the rest of the machine (event source, PostgreSQL, Redis, others)."
    )
    compared = report.get("comparison") or []
    if compared:
        lines += ["", "QuickPe / Socket.IO (same run, same clients, same events and rate):"]
        lines += [_ratios_table(compared), ""]
        lines.append(
            f"Issue 16's goal at {TARGET_CONNECTIONS:,}: p99 <= {GOAL['p99_ratio']:g}x, memory "
            f"per connection <= {GOAL['mem_ratio']:g}x, CPU per event <= "
            f"{GOAL['cpu_event_ratio']:g}x, accepted/s >= {GOAL['accept_ratio_min']:g}x, "
            "0 lost, duplicated or reordered."
        )
    for side, away in (report.get("away") or {}).items():
        lines.append(
            f"Replay while away, {TITLES[side]}: {away['received_after_reconnect']} of "
            f"{away['sent_while_away']} events sent while {away['users']} users were "
            f"disconnected reached them after reconnecting ({away['how']})."
        )
    for row in report["levels"]:
        if "probe" in row:
            lines.append(f"probe at {row['level']:,}: {fmt_probe(row['probe'])}")
    slow = [
        row
        for row in report["levels"]
        if row["server"] == QUICKPE and (row["latency_ms"]["p99"] or 0) >= TARGET_P99_MS
    ]
    if slow and not any("probe" in row for row in report["levels"]):
        lines.append(
            "p99 over the target: BENCH_WS_PROBE=1 shows what stalled daphne's event loop "
            "(full GC, its per-connection sweeps) and which slow frames waited through it."
        )
    if report.get("skipped"):
        lines.append(f"Skipped (time budget): {', '.join(map(str, report['skipped']))}")
    lines.append(f"Results: {report.get('results_file', '-')}")
    lines += [entry["line"] for entry in compared]
    lines.append("=" * 100)
    return "\n".join(lines)


def target_verdict(report: dict) -> dict:
    row = next(
        (
            r
            for r in report["levels"]
            if r["level"] == TARGET_CONNECTIONS and r["server"] == QUICKPE
        ),
        None,
    )
    if row is None:
        return {"verdict": "NOT RUN", "detail": f"no level of {TARGET_CONNECTIONS:,} measured"}
    return {
        "verdict": "PASS" if row["pass"] else "FAIL",
        "detail": (
            f"held {row['held_after']:,}, p99 {row['latency_ms']['p99']} ms, lost "
            f"{row['events']['lost']}, duplicates {row['events']['duplicates']}, out of order "
            f"{row['events']['out_of_order']}"
        ),
    }
