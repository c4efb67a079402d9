-- API tokens and the principal of every request.
--
-- A token's secret is never stored: only its SHA-256 digest (the secrets are random, so no
-- slow hash is needed). Policies and allowed subnets are kept as JSON arrays, validated
-- before they are written. A token is never deleted, only revoked, so requests keep naming
-- the token that submitted them. Booleans are 0 or 1; times are RFC 3339 text, as elsewhere.

create table api_tokens (
    seq integer primary key autoincrement,
    id text not null unique,
    account_id text not null,
    name text not null,
    digest text not null unique,
    policies text not null default '[]',
    allowed_subnets text not null default '[]',
    admin integer not null default 0,
    metrics integer not null default 0,
    forwarder integer not null default 0,
    expires_at text,
    revoked_at text,
    rotated_at text,
    last_used_at text,
    created_at text not null,
    updated_at text not null
);

create index api_tokens_by_account on api_tokens (account_id, seq);

-- Who submitted each request: the token (null for trusted Kafka messages and for requests
-- recorded before this version), its name, its account (an admin may act for another) and
-- the client's address.
alter table dns_requests add column principal_token_id text;
alter table dns_requests add column principal_name text;
alter table dns_requests add column principal_account text;
alter table dns_requests add column client_addr text;
