-- The database work of one POST /api/v1/transfers, without HTTP or Python (pgbench, -M simple).
-- Same tables, same rows locked, in the same order, as wallet.idempotency.idempotent() around
-- wallet.services.money.transfer_create() and audit.services.audit_append().
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

-- wallet.idempotency: the in-flight guard, then the key row.
SELECT pg_try_advisory_xact_lock(hashtextextended('idempotency:' || :sid || ':' || 'pgb-:run-:client_id-:n', 0));

SELECT id, user_id, key, fingerprint, response_status, response_body, created_at
FROM wallet_idempotencykey
WHERE key = 'pgb-:run-:client_id-:n' AND user_id = :sid
ORDER BY id ASC LIMIT 1;

-- money.wallets_lock: both wallets, FOR UPDATE in primary-key order, one query. The outer
-- SELECT only folds the two locked rows into one, for \gset; today is the Asia/Kolkata day.
WITH locked AS (
    SELECT id, user_id, balance, status, limits_day, deposited_on_day, outgoing_on_day,
           created_at, updated_at
    FROM wallet_wallet
    WHERE user_id IN (:sid, :rid)
    ORDER BY id ASC
    FOR UPDATE
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

INSERT INTO wallet_transfer
    (reference, sender_id, recipient_id, amount, note, category, status, created_at)
VALUES ('TRF' || upper(substr(md5(random()::text), 1, 12)), :sid, :rid, :amount, '',
        'transfer', 'completed', now())
RETURNING id AS tid, reference AS tref
\gset

-- money._post for the sender: absolute values computed by the caller, as Django saves them.
UPDATE wallet_wallet
SET balance = :sbal - :amount, limits_day = (now() AT TIME ZONE 'Asia/Kolkata')::date,
    deposited_on_day = :sdep, outgoing_on_day = :sout + :amount, updated_at = now()
WHERE id = :swid;

INSERT INTO wallet_ledgerentry
    (wallet_id, kind, direction, amount, balance_after, category, description,
     counterparty_id, transfer_id, reference, created_at)
VALUES (:swid, 'transfer_out', 'debit', :amount, :sbal - :amount, 'transfer',
        'To Bench User', :rid, :tid, 'TXN' || upper(substr(md5(random()::text), 1, 12)), now())
RETURNING id;

-- money._post for the recipient (its daily counters are written back unchanged).
UPDATE wallet_wallet
SET balance = :rbal + :amount, limits_day = limits_day, deposited_on_day = deposited_on_day,
    outgoing_on_day = outgoing_on_day, updated_at = now()
WHERE id = :rwid;

INSERT INTO wallet_ledgerentry
    (wallet_id, kind, direction, amount, balance_after, category, description,
     counterparty_id, transfer_id, reference, created_at)
VALUES (:rwid, 'transfer_in', 'credit', :amount, :rbal + :amount, 'transfer',
        'From Bench User', :sid, :tid, 'TXN' || upper(substr(md5(random()::text), 1, 12)), now())
RETURNING id;

-- audit_append: lock the sender's chain head and take the next seq, append, move the head.
SELECT last_hash, nextval(pg_get_serial_sequence('audit_auditentry', 'seq')) AS seq
FROM audit_auditchainhead WHERE chain = :chain FOR UPDATE
\gset

INSERT INTO audit_auditentry
    (seq, chain, actor_id, action, entity_type, entity_id, data, ip, user_agent, created_at,
     prev_hash, hash)
VALUES (:seq, :chain, :sid, 'transfer.create', 'transfer', ':tid',
        jsonb_build_object('reference', ':tref', 'amount', '1.00',
                           'recipient', 'QP' || lpad(:rid::text, 8, '0'), 'category', 'transfer'),
        '127.0.0.1', '', now(), ':last_hash',
        encode(sha256(convert_to(':last_hash' || ':seq:tref', 'UTF8')), 'hex'))
RETURNING hash AS new_hash
\gset

UPDATE audit_auditchainhead SET last_seq = :seq, last_hash = ':new_hash' WHERE chain = :chain;

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
