-- The database work of one POST /api/v1/transfers, without HTTP or Python (pgbench, -M simple).
-- Same tables, same rows locked, in the same order, and the same statements (quickpe/statements.py;
-- tests/test_statements.py checks this file against what an API transfer runs) as
-- wallet.idempotency.idempotent() around wallet.services.money.transfer_create(): the handler's
-- savepoint, wallets, transfer, ledger lines, the audit entry, the two notifications and the
-- seven events of the outbox, and the idempotency key.
-- The analytics figures' trigger on wallet_ledgerentry runs here as it does for the API.
-- Set by bench.run with -D: ubase (first bench user id; ids are contiguous), nusers,
-- nchains (QUICKPE_AUDIT_CHAINS), run (a tag that keeps idempotency keys unique), n=0.

-- A random sender and a different random recipient among the bench users, 1.00 each time.
\set s random(0, :nusers - 1)
\set r random(0, :nusers - 2)
\set r CASE WHEN :r >= :s THEN :r + 1 ELSE :r END
\set sid :ubase + :s
\set rid :ubase + :r
\set chain :sid % :nchains
\set amount 100
-- Per-client counter: client variables live across transactions, so keys never repeat.
\set n :n + 1

BEGIN;

-- wallet.idempotency: the in-flight guard and the key row, one statement.
SELECT pg_try_advisory_xact_lock(hashtextextended('idempotency:' || :sid || ':' || 'pgb-:run-:client_id-:n', 0)),
       key_row.*
FROM (SELECT 1) AS one
LEFT JOIN wallet_idempotencykey AS key_row
       ON key_row.user_id = :sid AND key_row.key = 'pgb-:run-:client_id-:n';

-- wallet.idempotency: the handler runs in a savepoint (a refusal rolls back to it).
SAVEPOINT handler;

-- wallet.locks.wallets_lock: both wallets, FOR NO KEY UPDATE in primary-key order. The outer
-- SELECT only folds the two locked rows into one, for \gset; today is the Asia/Kolkata day.
WITH locked AS (
    SELECT id, user_id, balance, status, limits_day, deposited_on_day, outgoing_on_day,
           created_at, updated_at
    FROM wallet_wallet
    WHERE user_id IN (:sid, :rid)
    ORDER BY id ASC
    FOR NO KEY UPDATE
), today AS (SELECT (now() AT TIME ZONE 'Asia/Kolkata')::date AS day)
SELECT max(id) FILTER (WHERE user_id = :sid) AS swid,
       max(balance) FILTER (WHERE user_id = :sid) AS sbal,
       max(CASE WHEN limits_day = day THEN deposited_on_day ELSE 0 END)
           FILTER (WHERE user_id = :sid) AS sdep,
       max(CASE WHEN limits_day = day THEN outgoing_on_day ELSE 0 END)
           FILTER (WHERE user_id = :sid) AS sout,
       max(id) FILTER (WHERE user_id = :rid) AS rwid,
       max(balance) FILTER (WHERE user_id = :rid) AS rbal
FROM locked, today
\gset

-- posting.post: the transfer, both wallets (one UPDATE of absolute values computed by the
-- caller) and both ledger lines in one statement; the lines take the transfer's id from its CTE.
WITH transfer AS (
    INSERT INTO wallet_transfer
        (reference, sender_id, recipient_id, amount, note, category, status, created_at)
    VALUES ('TRF' || upper(substr(md5(random()::text), 1, 12)), :sid, :rid, :amount, '',
            'transfer', 'completed', now())
    RETURNING id, reference
), moved AS (
    UPDATE wallet_wallet AS w
    SET balance = v.balance, updated_at = v.updated_at,
        limits_day = COALESCE(v.limits_day, w.limits_day),
        deposited_on_day = COALESCE(v.deposited, w.deposited_on_day),
        outgoing_on_day = COALESCE(v.outgoing, w.outgoing_on_day)
    FROM (VALUES
        (:swid::bigint, (:sbal - :amount)::bigint, now(),
         (now() AT TIME ZONE 'Asia/Kolkata')::date, :sdep::bigint, (:sout + :amount)::bigint),
        -- The recipient's daily counters go back unchanged (the API writes the values it read).
        (:rwid::bigint, (:rbal + :amount)::bigint, now(), NULL::date, NULL::bigint, NULL::bigint)
    ) AS v(id, balance, updated_at, limits_day, deposited, outgoing)
    WHERE w.id = v.id
), lines AS (
    INSERT INTO wallet_ledgerentry
        (wallet_id, kind, direction, amount, balance_after, category, description,
         counterparty_id, transfer_id, reference, created_at)
    SELECT line.*, transfer.id, 'TXN' || upper(substr(md5(random()::text), 1, 12)), now()
    FROM transfer, (VALUES
        (:swid::bigint, 'transfer_out', 'debit', :amount::bigint, (:sbal - :amount)::bigint,
         'transfer', 'To Bench User', :rid::bigint),
        (:rwid::bigint, 'transfer_in', 'credit', :amount::bigint, (:rbal + :amount)::bigint,
         'transfer', 'From Bench User', :sid::bigint)
    ) AS line
    RETURNING id
)
SELECT id AS tid, reference AS tref FROM transfer
\gset

-- audit_append: one statement locks the sender's chain head, then takes the next seq, inserts
-- the entry hashed by PostgreSQL over the canonical JSON around the seq, and moves the head.
WITH locked AS MATERIALIZED (
    SELECT chain, last_hash FROM audit_auditchainhead WHERE chain = :chain FOR NO KEY UPDATE
), head AS (
    SELECT chain, last_hash, nextval(pg_get_serial_sequence('audit_auditentry', 'seq')) AS seq
    FROM locked
), entry AS (
    INSERT INTO audit_auditentry
        (seq, chain, actor_id, action, entity_type, entity_id, data, ip, user_agent, created_at,
         prev_hash, hash)
    SELECT head.seq, head.chain, :sid, 'transfer.create', 'transfer', ':tid',
           jsonb_build_object('reference', ':tref', 'amount', '1.00',
                              'recipient', 'QP' || lpad(:rid::text, 8, '0'),
                              'category', 'transfer'),
           '127.0.0.1', '', now(), head.last_hash,
           encode(sha256(convert_to(
               head.last_hash || '{"action":"transfer.create","actor":' || :sid || ',"chain":'
               || head.chain || ',"created_at":"' || now() || '","data":{"amount":"1.00",'
               || '"category":"transfer","recipient":"QP' || lpad(:rid::text, 8, '0')
               || '","reference":":tref"},"entity_id":":tid","entity_type":"transfer",'
               || '"ip":"127.0.0.1","seq":' || head.seq || ',"user_agent":""}', 'UTF8')), 'hex')
    FROM head
    RETURNING seq, chain, prev_hash, hash
)
UPDATE audit_auditchainhead AS head SET last_seq = entry.seq, last_hash = entry.hash
FROM entry WHERE head.chain = entry.chain
RETURNING entry.seq, entry.prev_hash, entry.hash;

-- notifications_create: both notifications and each one's unread count, one statement.
WITH added AS (
    INSERT INTO notifications_notification (user_id, kind, title, body, data, read_at, created_at)
    VALUES (:sid, 'transfer_sent', 'You sent ₹1.00 to Bench User', '',
            jsonb_build_object('transfer_id', :tid, 'reference', ':tref'), NULL, now()),
           (:rid, 'transfer_received', 'Bench User sent you ₹1.00', '',
            jsonb_build_object('transfer_id', :tid, 'reference', ':tref'), NULL, now())
    RETURNING id, user_id, read_at
)
SELECT added.id,
       (SELECT count(*) FROM notifications_notification AS earlier
        WHERE earlier.user_id = added.user_id AND earlier.read_at IS NULL)
       + (SELECT count(*) FROM added AS mine
          WHERE mine.user_id = added.user_id AND mine.read_at IS NULL)
FROM added;

-- events_emit: both streams locked and advanced (user-id order) and the seven events
-- (sender: balance, transaction, notification, audit; recipient: the first three), numbered
-- back from each stream's new last seq, in one statement.
WITH stream AS (
    INSERT INTO notifications_eventstream (user_id, last_seq)
    SELECT * FROM unnest(ARRAY[LEAST(:sid, :rid), GREATEST(:sid, :rid)]::bigint[],
                         ARRAY[CASE WHEN :sid < :rid THEN 4 ELSE 3 END,
                               CASE WHEN :sid < :rid THEN 3 ELSE 4 END]::bigint[]) ORDER BY 1
    ON CONFLICT (user_id)
    DO UPDATE SET last_seq = notifications_eventstream.last_seq + EXCLUDED.last_seq
    RETURNING user_id, last_seq
), added AS (
    INSERT INTO notifications_event (user_id, seq, type, data, created_at)
    SELECT event.user_id, stream.last_seq - event.before_last, event.type,
           jsonb_build_object('transaction_id', :tid), now()
    FROM (VALUES (:sid::bigint, 3, 'balance:update'), (:sid, 2, 'transaction:new'),
                 (:sid, 1, 'notification:new'), (:sid, 0, 'audit:new'),
                 (:rid, 2, 'balance:update'), (:rid, 1, 'transaction:new'),
                 (:rid, 0, 'notification:new')) AS event(user_id, before_last, type)
    JOIN stream USING (user_id)
)
SELECT user_id, last_seq FROM stream;

RELEASE SAVEPOINT handler;

-- wallet.idempotency: the key row with the response, committed with the movement.
INSERT INTO wallet_idempotencykey
    (user_id, key, fingerprint, response_status, response_body, created_at)
VALUES (:sid, 'pgb-:run-:client_id-:n', encode(sha256(convert_to('pgb-:run-:client_id-:n', 'UTF8')), 'hex'),
        201,
        jsonb_build_object(
            'transaction', jsonb_build_object(
                'id', :tid, 'reference', ':tref', 'kind', 'transfer_out', 'direction', 'debit',
                'amount', '1.00', 'balance_after', (:sbal - :amount)::text, 'category', 'transfer',
                'description', 'To Bench User',
                'counterparty', jsonb_build_object('quickpe_id', 'QP' || lpad(:rid::text, 8, '0'),
                                                   'name', 'Bench User'),
                'transfer_id', :tid, 'created_at', now()),
            'balance', (:sbal - :amount)::text,
            'transfer', jsonb_build_object(
                'id', :tid, 'reference', ':tref',
                'sender', jsonb_build_object('quickpe_id', 'QP' || lpad(:sid::text, 8, '0'),
                                             'name', 'Bench User'),
                'recipient', jsonb_build_object('quickpe_id', 'QP' || lpad(:rid::text, 8, '0'),
                                                'name', 'Bench User'),
                'amount', '1.00', 'note', '', 'category', 'transfer', 'status', 'completed',
                'created_at', now())),
        now());

COMMIT;
