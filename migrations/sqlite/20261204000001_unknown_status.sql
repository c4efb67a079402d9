-- no-transaction
-- The status UNKNOWN: a change was sent but its outcome is not known (the answer was lost,
-- verification did not see it) until a worker queries the server. It is unfinished: later
-- requests for the name wait for it, and it counts against MAX_UNFINISHED_PER_NAME.
--
-- SQLite cannot change a check constraint in place, so the table is rebuilt (SQLite's own
-- procedure: foreign keys off, which only takes effect outside a transaction, then one
-- transaction), with the index over unfinished requests including UNKNOWN.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DROP TABLE IF EXISTS dns_requests_next;
CREATE TABLE dns_requests_next (
    seq integer primary key autoincrement,
    id text not null unique,
    account_id text not null,
    source text not null,
    operation text not null,
    record_type text not null,
    domain text not null,
    target text not null,
    comment text,
    config text not null,
    status text not null check (status in ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'UNKNOWN')),
    log_messages text not null default '[]',
    idempotency_key text,
    fingerprint text not null,
    attempts integer not null default 0,
    last_error text,
    zone text,
    backend text,
    next_attempt_at text not null,
    enqueued_at text,
    lease_token text,
    lease_expires_at text,
    started_at text,
    applied_at text,
    verified_at text,
    finished_at text,
    created_at text not null,
    updated_at text not null,
    principal_token_id text,
    principal_name text,
    principal_account text,
    client_addr text
);
INSERT INTO dns_requests_next (seq, id, account_id, source, operation, record_type, domain,
    target, comment, config, status, log_messages, idempotency_key, fingerprint, attempts,
    last_error, zone, backend, next_attempt_at, enqueued_at, lease_token, lease_expires_at,
    started_at, applied_at, verified_at, finished_at, created_at, updated_at,
    principal_token_id, principal_name, principal_account, client_addr)
SELECT seq, id, account_id, source, operation, record_type, domain,
    target, comment, config, status, log_messages, idempotency_key, fingerprint, attempts,
    last_error, zone, backend, next_attempt_at, enqueued_at, lease_token, lease_expires_at,
    started_at, applied_at, verified_at, finished_at, created_at, updated_at,
    principal_token_id, principal_name, principal_account, client_addr
FROM dns_requests;
DROP TABLE dns_requests;
ALTER TABLE dns_requests_next RENAME TO dns_requests;
CREATE UNIQUE INDEX dns_requests_idempotency
    on dns_requests (account_id, idempotency_key) where idempotency_key is not null;
CREATE INDEX dns_requests_unfinished
    on dns_requests (domain, seq) where status in ('PENDING', 'PROCESSING', 'UNKNOWN');
CREATE INDEX dns_requests_leases on dns_requests (lease_expires_at) where status = 'PROCESSING';
CREATE INDEX dns_requests_by_account on dns_requests (account_id, seq);
CREATE INDEX dns_requests_by_status on dns_requests (status, seq);
CREATE INDEX dns_requests_by_domain on dns_requests (domain, seq);
CREATE TRIGGER dns_requests_claim_rrset after insert on dns_requests
when new.operation = 'create'
begin
    insert or ignore into dns_rrsets (domain, record_type, account_id, created_at, updated_at)
    values (new.domain, new.record_type, new.account_id, new.created_at, new.created_at);
end;
COMMIT;
PRAGMA foreign_keys = ON;
