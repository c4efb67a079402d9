-- API tokens and the principal of every request.
--
-- A token's secret is never stored: only its SHA-256 digest (the secrets are random, so no
-- slow hash is needed). Policies and allowed subnets are kept as JSON arrays, validated
-- before they are written. A token is never deleted, only revoked, so requests keep naming
-- the token that submitted them.

create table api_tokens (
    seq bigserial not null unique,
    id uuid primary key,
    account_id text not null,
    name text not null,
    digest text not null unique,
    policies jsonb not null default '[]'::jsonb,
    allowed_subnets jsonb not null default '[]'::jsonb,
    admin boolean not null default false,
    metrics boolean not null default false,
    forwarder boolean not null default false,
    expires_at timestamptz,
    revoked_at timestamptz,
    rotated_at timestamptz,
    last_used_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null
);

create index api_tokens_by_account on api_tokens (account_id, seq);

-- Who submitted each request: the token (null for trusted Kafka messages and for requests
-- recorded before this version), its name, its account (an admin may act for another) and
-- the client's address.
alter table dns_requests add column principal_token_id uuid;
alter table dns_requests add column principal_name text;
alter table dns_requests add column principal_account text;
alter table dns_requests add column client_addr text;
