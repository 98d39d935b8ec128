"""The hand-written SQL of the money hot path (and of the event stream's once-a-second look), in
one place.

Every money-moving request runs these (with the mini-ORM of ``quickpe.db`` to turn rows into
model instances and instances into INSERTs), and each daphne process ``STREAMS_BEHIND``. Each
is here because the plain ORM version cost more than its benchmark allows (``make bench``,
``bench.stream_watch``; see docs/performance.md); each has a header saying what it
guarantees, and a test of its own in ``tests/test_statements.py``. ``bench/transfer.sql``, the
raw-SQL ceiling the transfer benchmark compares against, runs the same statements in the same
order; a test checks it against what an API transfer runs.

Only ``%s`` placeholders reach the database with values; the few ``{}`` holes take a number
of placeholders or a statement built by ``quickpe.db.insert_statement`` from model metadata.
"""

# wallet.idempotency: the key's in-flight guard and its row, in one round trip.
# Guarantees: ``in_flight_guard`` is true only for the one transaction that holds the
# transaction-scoped advisory lock on (user, key), tried without waiting. The row is read in
# the snapshot the statement starts with, before the lock is tried, so a duplicate that
# commits in between goes unseen here; the unique (user, key) index stops that attempt's
# commit instead (wallet.idempotency explains the rest).
IDEMPOTENCY_GUARD_AND_LOOKUP = """
    SELECT pg_try_advisory_xact_lock(%s) AS in_flight_guard, key_row.*
    FROM (SELECT 1) AS one
    LEFT JOIN wallet_idempotencykey AS key_row ON key_row.user_id = %s AND key_row.key = %s
"""

# wallet.services.money: a payee by email (lower-cased by the caller) or QuickPe ID
# (upper-cased). Guarantees: only active accounts are found, and by email only one whose owner
# verified that address (wallet.services.emails).
ACTIVE_USER_BY_EMAIL = "SELECT * FROM wallet_user WHERE email = %s AND is_active AND email_verified"
ACTIVE_USER_BY_QUICKPE_ID = "SELECT * FROM wallet_user WHERE quickpe_id = %s AND is_active"

# wallet.locks.wallets_lock: the wallets of some users (``{}``: one placeholder per user id,
# cheaper for psycopg to send than an array). Guarantees: every row is locked in one query, in
# primary-key order, so two changes on the same wallets queue instead of deadlocking; FOR NO
# KEY UPDATE, so inserts referencing a wallet (ledger lines) are not blocked by it.
WALLETS_LOCK = "SELECT * FROM wallet_wallet WHERE user_id IN ({}) ORDER BY id FOR NO KEY UPDATE"

# wallet.services.posting: the wallets' new values (``{rows}``: one WALLET_VALUES per wallet),
# as a CTE of the statement that inserts the ledger lines (and, before them, a new transfer,
# whose id the lines take from its CTE). Guarantees: balances, counters, the transfer and the
# lines are written by one statement, so they succeed or fail together; each CTE runs once
# whether or not it is referenced; the ``balance >= 0`` check applies to the new balances.
POSTING_WALLETS_UPDATE = (
    "UPDATE wallet_wallet AS w SET balance = v.balance, updated_at = v.updated_at,"
    " limits_day = v.limits_day, deposited_on_day = v.deposited, outgoing_on_day = v.outgoing"
    " FROM (VALUES {rows}) AS v(id, balance, updated_at, limits_day, deposited, outgoing)"
    " WHERE w.id = v.id"
)
POSTING_WALLET_VALUES = (
    "(%s::bigint, %s::bigint, %s::timestamptz, %s::date, %s::bigint, %s::bigint)"
)
POSTING = "WITH {ctes} {lines_insert} RETURNING id, transfer_id"

# audit.services.audit_append: one entry appended to a chain.
# Guarantees: the chain head is locked first (the MATERIALIZED CTE runs before the one that
# reads it), then the seq is taken, so a chain's seqs follow the order its appends commit in;
# the entry's hash is computed by PostgreSQL from the head's hash and the canonical JSON that
# audit.chain cuts around the seq (its one definition of the format); the head moves to the
# new entry in the same statement. No row when the chain head is missing.
AUDIT_APPEND = """
    WITH locked AS MATERIALIZED (
        SELECT chain, last_hash FROM audit_auditchainhead WHERE chain = %s FOR NO KEY UPDATE
    ), head AS (
        SELECT chain, last_hash, nextval(pg_get_serial_sequence('audit_auditentry', 'seq')) AS seq
        FROM locked
    ), entry AS (
        INSERT INTO audit_auditentry (seq, chain, actor_id, action, entity_type, entity_id, data,
                                      ip, user_agent, created_at, prev_hash, hash)
        SELECT head.seq, head.chain, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, head.last_hash,
               encode(sha256(convert_to(head.last_hash || %s || head.seq || %s, 'UTF8')), 'hex')
        FROM head
        RETURNING seq, chain, prev_hash, hash
    )
    UPDATE audit_auditchainhead AS head SET last_seq = entry.seq, last_hash = entry.hash
    FROM entry WHERE head.chain = entry.chain
    RETURNING entry.seq, entry.prev_hash, entry.hash
"""

# notifications.services.notifications_create: notifications (``{insert}``: their INSERT)
# and each one's unread count after it. Guarantees: the count is the user's unread rows before
# this statement plus this statement's unread rows of the same user (the new rows are not
# visible to the count: one snapshot per statement), so each ``notification:new`` carries the
# count the bell shows once it commits.
NOTIFICATIONS_INSERT = """
    WITH added AS ({insert} RETURNING id, user_id, read_at)
    SELECT added.id,
           (SELECT count(*) FROM notifications_notification AS earlier
            WHERE earlier.user_id = added.user_id AND earlier.read_at IS NULL)
           + (SELECT count(*) FROM added AS mine
              WHERE mine.user_id = added.user_id AND mine.read_at IS NULL)
    FROM added
"""

# notifications.services.events_emit: a whole emit. The events travel as one JSON array of
# {user_id, before_last, type, data} (one json.dumps; psycopg quotes array parameters element
# by element in Python). Guarantees: every stream row is locked (created if missing) in
# user-id order by the upsert's ORDER BY, in one statement; each stream's seq numbers are
# reserved by adding its event count, and its events numbered back from the new last seq, so a
# user's seqs have no gaps and follow commit order; returns each stream's new last seq.
EVENTS_EMIT = """
    WITH event AS (
        SELECT * FROM jsonb_to_recordset(%s::jsonb)
            AS event(user_id bigint, before_last bigint, type text, data jsonb)
    ), stream AS (
        INSERT INTO notifications_eventstream (user_id, last_seq)
        SELECT user_id, count(*) FROM event GROUP BY user_id ORDER BY user_id
        ON CONFLICT (user_id)
        DO UPDATE SET last_seq = notifications_eventstream.last_seq + EXCLUDED.last_seq
        RETURNING user_id, last_seq
    ), added AS (
        INSERT INTO notifications_event (user_id, seq, type, data, created_at)
        SELECT event.user_id, stream.last_seq - event.before_last, event.type, event.data, %s
        FROM event JOIN stream USING (user_id)
    )
    SELECT user_id, last_seq FROM stream
"""

# notifications.stream_watch: which of a daphne process's users have events its sockets have not
# sent, asked once a second for every open socket. The positions travel as one JSON object
# {user_id: sent} (one json.dumps), and only the users behind come back: the ORM's IN list and
# a row per user cost ten times the CPU (docs/performance.md). Guarantees: returns
# (user_id, last_seq) exactly for the users given whose committed stream is past the position
# given, each read by primary key; nothing else.
STREAMS_BEHIND = """
    SELECT stream.user_id, stream.last_seq
    FROM jsonb_each_text(%s::jsonb) AS sent(user_id, seq)
    JOIN notifications_eventstream AS stream ON stream.user_id = sent.user_id::bigint
    WHERE stream.last_seq > sent.seq::bigint
"""
