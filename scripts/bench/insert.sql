-- pgbench script (scripts/bench.sh): the single-row INSERT that dnsorch's PostgreSQL store runs
-- for every accepted request (PostgresStore::insert in src/store/postgres.rs), with the same
-- columns, the same ON CONFLICT clause and the same RETURNING list, one per transaction
-- (autocommit, like sqlx). Run with -M prepared, as sqlx prepares its statements.
--
-- Every row gets a random owner name p<client>-<n>.bench.example.test, a random 64-hex-digit
-- fingerprint and no idempotency key, as a wrk POST does. Keep a space after every colon inside
-- the literals: pgbench reads ":name" as a variable even there.
\set n random(1, 1000000000)
insert into dns_requests (id, account_id, source, operation, record_type, domain,
    target, comment, config, status, log_messages, idempotency_key, fingerprint,
    next_attempt_at, enqueued_at, created_at, updated_at)
values (gen_random_uuid(), 'bench', 'api', 'create', 'A',
    'p' || cast(:client_id as text) || '-' || cast(:n as text) || '.bench.example.test',
    '192.0.2.1', null, '{"ttl": 300, "priority": null, "extra_config": {}}'::jsonb, 'PENDING',
    jsonb_build_array(jsonb_build_object('at', now(), 'level', 'info',
        'message', 'request accepted from api: create A p' || cast(:client_id as text) || '-'
            || cast(:n as text) || '.bench.example.test 192.0.2.1')),
    null, md5(random()::text) || md5(random()::text),
    now(), now(), now(), now())
on conflict (account_id, idempotency_key) where idempotency_key is not null
do nothing
returning seq, id, account_id, source, operation, record_type, domain, target, comment,
    config, status, idempotency_key, fingerprint, attempts, last_error, zone, backend,
    next_attempt_at, started_at, applied_at, verified_at, finished_at, lease_expires_at,
    created_at, updated_at, log_messages;
