-- The original design's two tables, plus what an orchestrator needs: the account, the
-- operation, idempotency, attempts and backoff, the lease (crash recovery and fencing), and
-- phase timestamps. Times are UTC text in RFC 3339 with milliseconds, written with the
-- database's clock, so they compare as text.

create table dns_requests (
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
    status text not null check (status in ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')),
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
    updated_at text not null
);

-- One request per (account, key): the index, not a read before the write, decides.
create unique index dns_requests_idempotency
    on dns_requests (account_id, idempotency_key) where idempotency_key is not null;
-- Order per owner name: is there an older unfinished request for this name?
create index dns_requests_unfinished_by_name
    on dns_requests (domain, seq) where status in ('PENDING', 'PROCESSING');
-- Expired leases.
create index dns_requests_leases on dns_requests (lease_expires_at) where status = 'PROCESSING';
create index dns_requests_by_account on dns_requests (account_id, seq);
-- Lists by status, and the oldest due request (status = 'PENDING' order by seq).
create index dns_requests_by_status on dns_requests (status, seq);
create index dns_requests_by_domain on dns_requests (domain, seq);

create table dns_records (
    seq integer primary key autoincrement,
    id text not null unique,
    request_id text not null unique references dns_requests (id),
    account_id text not null,
    record_type text not null,
    domain text not null,
    target text not null,
    comment text,
    ttl integer not null,
    priority integer,
    zone text,
    provisioned_at text not null,
    created_at text not null,
    updated_at text not null
);

create index dns_records_by_rrset on dns_records (domain, record_type);
create index dns_records_by_account on dns_records (account_id, seq);
