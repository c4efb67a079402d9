-- The original design's two tables (UUID keys, timestamptz, jsonb config and log), plus what
-- an orchestrator needs: the account, the operation, idempotency, attempts and backoff, the
-- lease (crash recovery and fencing), and phase timestamps. Times come from the database's
-- clock.

create table dns_requests (
    seq bigserial not null unique,
    id uuid primary key,
    account_id text not null,
    source text not null,
    operation text not null,
    record_type text not null,
    domain text not null,
    target text not null,
    comment text,
    config jsonb not null,
    status text not null check (status in ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')),
    log_messages jsonb not null default '[]'::jsonb,
    idempotency_key text,
    fingerprint text not null,
    attempts integer not null default 0,
    last_error text,
    zone text,
    backend text,
    next_attempt_at timestamptz not null,
    enqueued_at timestamptz,
    lease_token uuid,
    lease_expires_at timestamptz,
    started_at timestamptz,
    applied_at timestamptz,
    verified_at timestamptz,
    finished_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null
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
    seq bigserial not null unique,
    id uuid primary key,
    request_id uuid not null unique references dns_requests (id),
    account_id text not null,
    record_type text not null,
    domain text not null,
    target text not null,
    comment text,
    ttl bigint not null,
    priority integer,
    zone text,
    provisioned_at timestamptz not null,
    created_at timestamptz not null,
    updated_at timestamptz not null
);

create index dns_records_by_rrset on dns_records (domain, record_type);
create index dns_records_by_account on dns_records (account_id, seq);
