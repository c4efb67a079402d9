-- One owner per RRset, each ledger record once, and the audit log.
--
-- An RRset (owner name, type) that dnsorch manages belongs to exactly one account: the row in
-- dns_rrsets, claimed at intake in the request's own statement (the primary key decides when
-- two accounts race). Existing ledgers are converted below: each RRset goes to the account of
-- its oldest ledger row, duplicate rows are merged into the oldest, and every RRset that held
-- rows of several accounts is recorded in the audit log (and logged when the migration runs).

create table dns_rrsets (
    domain text not null,
    record_type text not null,
    account_id text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    primary key (domain, record_type)
);

-- Who did what to tokens and ownership, and when. `actor_*` are null for the command line
-- and for this migration (then actor_name says which).
create table dns_audit (
    seq bigserial not null unique,
    id uuid primary key,
    at timestamptz not null,
    action text not null,
    subject text not null,
    actor_token_id uuid,
    actor_name text,
    actor_account text,
    client_addr text,
    details jsonb not null default '{}'::jsonb
);

create index dns_audit_by_action on dns_audit (action, seq);

-- Unfinished requests per account and owner name (MAX_UNFINISHED_PER_NAME) are counted
-- through dns_requests_unfinished_by_name: at most the name's unfinished requests are read,
-- and an index of its own would cost every insert and status change more than it saves.

-- Whether the account may add a request for the name: called inside the insert statement.
-- The advisory lock (held to the end of the inserting transaction) makes inserts for one
-- account and name take turns, and a volatile function's query takes a fresh snapshot, so
-- each one counts the requests the ones before it committed: the limit holds exactly.
create function dnsorch_room_for(p_domain text, p_account text, p_max bigint)
returns boolean language plpgsql volatile as $$
begin
    perform pg_advisory_xact_lock(hashtextextended(p_account || ' ' || p_domain, 0));
    return (select count(*) from (select 1 from dns_requests
            where domain = p_domain and account_id = p_account
              and status in ('PENDING', 'PROCESSING') limit p_max) unfinished) < p_max;
end
$$;

-- RRsets that held rows of several accounts.
insert into dns_audit (id, at, action, subject, actor_name, details)
select gen_random_uuid(), now(), 'rrset.merged', domain || ' ' || record_type, 'migration',
       jsonb_build_object(
           'domain', domain, 'record_type', record_type,
           'owner', (array_agg(account_id order by seq))[1],
           'accounts', to_jsonb(array_agg(distinct account_id)))
from dns_records
group by domain, record_type
having count(distinct account_id) > 1;

-- Each RRset to the account of its oldest row.
insert into dns_rrsets (domain, record_type, account_id, created_at, updated_at)
select distinct on (domain, record_type) domain, record_type, account_id, now(), now()
from dns_records
order by domain, record_type, seq;

-- Creates still unfinished claim the RRsets nobody owns, each for its oldest request's
-- account (another account's creates there will fail when a worker takes them).
insert into dns_rrsets (domain, record_type, account_id, created_at, updated_at)
select distinct on (domain, record_type) domain, record_type, account_id, now(), now()
from dns_requests
where operation = 'create' and status in ('PENDING', 'PROCESSING')
order by domain, record_type, seq
on conflict do nothing;

update dns_records r set account_id = o.account_id, updated_at = now()
from dns_rrsets o
where o.domain = r.domain and o.record_type = r.record_type and r.account_id <> o.account_id;

-- Duplicates merge into the oldest row of each record.
delete from dns_records r
using dns_records older
where older.domain = r.domain and older.record_type = r.record_type
  and older.target = r.target and coalesce(older.priority, -1) = coalesce(r.priority, -1)
  and older.seq < r.seq;

-- An adoption writes several rows for one request.
alter table dns_records drop constraint dns_records_request_id_key;

create unique index dns_records_unique_record
    on dns_records (domain, record_type, target, (coalesce(priority, -1)));
