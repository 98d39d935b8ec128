"""How daphne is run so that one process holds 10,000 WebSockets without stalling deliveries.

Both measured by ``make bench`` (``bench/ws.py``; ``BENCH_WS_PROBE=1`` shows the stalls).

**Pings.** daphne pings each connection every ``--ping-interval`` seconds from one sweep over all
connections every 2 s. With its default, 20 s, a process holding 10,000 connections sends a
tenth of them a ping in each sweep and reads the pongs right after it, time in which nothing is
delivered. At 50 s it is two fifths of that (docs/performance.md has the measurements).
50 s stays under the 55-60 s idle timeouts of common load balancers (docs/production.md's
nginx waits an hour), and a dead peer is still dropped within 80 s (the 30 s
``--ping-timeout`` after a ping). ``make run`` and ``bench.ws`` use these options.

**Garbage collection.** Each open connection keeps about 130 objects the cycle collector tracks
(daphne's, Twisted's, autobahn's, Channels' and the consumer's), so at 10,000 connections a full
collection walks over a million objects and stops the event loop for over a second. CPython
runs one when the objects promoted to the old generation since the last reach 25 % of those it
left there. With the default thresholds (700, 10, 10) that happened within a minute even with
every connection idle: daphne's once-a-second sweep (``Server.application_checker``) copies its
connection table into one tuple per connection, young collections ran every 700 new objects in
the middle of it, and promoted the tuples they found alive (a delivery's in-flight objects too).
With a young generation of 50,000 (several times that sweep's burst at 10,000 connections) such
objects are gone before a young collection looks: promotions in a steady state drop to none,
and full collections come only when the connections themselves grow (a young collection of
50,000 objects stays short).
"""

import gc

DAPHNE_OPTIONS = ("--ping-interval", "50")

YOUNG = 50_000
# The middle generation is collected every other young collection: with the default (10) it
# grew to hundreds of thousands of objects while connections were being opened, a long pause
# when collected.
MIDDLE = 1


def tune_for_daphne() -> None:
    """Apply the collector settings once daphne's reactor runs, after start-up. Only daphne
    runs the reactor, so importing ``quickpe.asgi`` elsewhere (the tests) changes nothing."""
    from twisted.internet import reactor  # the asyncio reactor: daphne's app installed it

    reactor.callWhenRunning(_apply_gc_settings)
    reactor.addSystemEventTrigger("before", "shutdown", close_for_restart)


# "Service restart" (RFC 6455 section 7.4.1 as registered by IANA): reconnect and resume.
CLOSE_RESTART = 1012
CLOSE_GRACE = 2.0  # seconds


def close_for_restart():
    """On SIGTERM, before daphne cancels its applications: send every open socket a close
    frame saying "service restart", so clients reconnect (to another daphne) and resume from
    their last event id instead of seeing a dropped connection. autobahn lets applications
    close only with 1000 or 3000-4999, hence the frame is sent directly; daphne keeps no
    public list of its sockets, so at shutdown one walk of the heap finds them. Returns a
    Deferred: the reactor waits (up to CLOSE_GRACE seconds) for the frames to go out and the
    clients to answer before it drops the connections."""
    from autobahn.websocket.protocol import WebSocketProtocol
    from twisted.internet import reactor, task

    open_sockets = [
        candidate
        for candidate in gc.get_objects()
        if isinstance(candidate, WebSocketProtocol) and candidate.state == candidate.STATE_OPEN
    ]
    for socket in open_sockets:
        socket.sendCloseFrame(code=CLOSE_RESTART, reasonUtf8=b"service restart")
    deadline = reactor.seconds() + CLOSE_GRACE

    def closed_or_late() -> bool:
        pending = [s for s in open_sockets if s.state != s.STATE_CLOSED]
        return not pending or reactor.seconds() >= deadline

    def wait():
        if not closed_or_late():
            return task.deferLater(reactor, 0.05, wait)
        return None

    return task.deferLater(reactor, 0, wait)


def _apply_gc_settings() -> None:
    # What start-up built (Django, settings, URL conf, models: a large share of every full
    # collection) lives as long as the process: out of every collection's way.
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, gc.get_threshold()[2])
