"""``make bench``: how close does POST /api/v1/transfers come to what PostgreSQL can do?

``bench.run`` builds a dedicated database (never the development database ``quickpe``),
measures the raw-SQL ceiling with pgbench running the same statements as one API transfer
(``bench/transfer.sql``), then drives the API under gunicorn with wrk (``bench/transfer.lua``)
or, without wrk, ``bench.loadgen``. Results are printed and written to ``bench/results/``.

``bench.ws`` (run after it by ``make bench``) holds 1,000, 5,000 and 10,000 authenticated
WebSocket connections on one daphne process (clients: ``bench.ws_client``) while transfers run
(``bench.ws_django``), and the same on a Socket.IO reference (``bench/socketio``, Node), and
reports memory and CPU per connection and per event, delivery latency, lost events and the
ratios between the two (``bench/results/ws-*.json``).
"""
