-- Change sets: several changes submitted together (`POST /api/v1/dns/changes`). Each change is
-- a request of its own in dns_requests, which names its set:
--   change_set_id     the set (null for a request submitted alone)
--   change_set_index  its position in the set's `changes`, from 0
--   set_role          'item'   a change of a set that is not atomic: a request like any other;
--                     'lead'   the request of an atomic set that is claimed, leased and
--                              finished, for all of the set's changes at once;
--                     'member' another change of an atomic set: never claimed by itself, it
--                              stays PENDING until its lead's outcome is written to it, in the
--                              lead's finish transaction.
-- Nullable columns without defaults: adding them rewrites no row.
alter table dns_requests
    add column if not exists change_set_id uuid,
    add column if not exists change_set_index integer,
    add column if not exists set_role text;

-- A set as submitted: who, when, atomic or not, and the changes intake refused (by index, with
-- the answer each got); the accepted ones are its requests. Written after its requests, in the
-- same transaction for an atomic set.
create table if not exists dns_change_sets (
    seq bigserial not null unique,
    id uuid primary key,
    account_id text not null,
    atomic boolean not null,
    item_count integer not null,
    refused jsonb not null default '[]'::jsonb,
    idempotency_key text,
    -- A digest of the body as parsed: the same key with another body is a 409.
    fingerprint text not null,
    source text not null,
    principal_token_id uuid,
    principal_name text,
    principal_account text,
    client_addr text,
    created_at timestamptz not null
);

create index if not exists dns_change_sets_by_account on dns_change_sets (account_id, seq);
-- One set per (account, key), as for requests.
create unique index if not exists dns_change_sets_idempotency
    on dns_change_sets (account_id, idempotency_key) where idempotency_key is not null;
