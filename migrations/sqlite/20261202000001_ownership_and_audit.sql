-- One owner per RRset, each ledger record once, and the audit log.
--
-- An RRset (owner name, type) that dnsorch manages belongs to exactly one account: the row in
-- dns_rrsets, claimed at intake in the request's own transaction (the primary key decides).
-- Existing ledgers are converted below: each RRset goes to the account of its oldest ledger
-- row, duplicate rows are merged into the oldest, and every RRset that held rows of several
-- accounts is recorded in the audit log (and logged when the migration runs).

create table dns_rrsets (
    domain text not null,
    record_type text not null,
    account_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (domain, record_type)
) without rowid;

-- Who did what to tokens and ownership, and when. `actor_*` are null for the command line
-- and for this migration (then actor_name says which).
create table dns_audit (
    seq integer primary key autoincrement,
    id text not null unique,
    at text not null,
    action text not null,
    subject text not null,
    actor_token_id text,
    actor_name text,
    actor_account text,
    client_addr text,
    details text not null default '{}'
);

create index dns_audit_by_action on dns_audit (action, seq);

-- A create claims its RRset in the statement that inserts it (the insert itself checks that
-- no other account owns the RRset): one statement per request on the writer.
create trigger dns_requests_claim_rrset after insert on dns_requests
when new.operation = 'create'
begin
    insert or ignore into dns_rrsets (domain, record_type, account_id, created_at, updated_at)
    values (new.domain, new.record_type, new.account_id, new.created_at, new.created_at);
end;

-- Unfinished requests per account and owner name (MAX_UNFINISHED_PER_NAME) are counted
-- through dns_requests_unfinished_by_name: at most the name's unfinished requests are read,
-- and an index of its own would cost every insert and status change more than it saves.

-- RRsets that held rows of several accounts.
insert into dns_audit (id, at, action, subject, actor_name, details)
select lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
       substr(lower(hex(randomblob(2))), 2) || '-a' || substr(lower(hex(randomblob(2))), 2) ||
       '-' || lower(hex(randomblob(6))),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'rrset.merged', domain || ' ' || record_type,
       'migration',
       json_object('domain', domain, 'record_type', record_type,
           'owner', (select o.account_id from dns_records o
                     where o.domain = g.domain and o.record_type = g.record_type
                     order by o.seq limit 1),
           'accounts', (select json_group_array(account_id) from
                        (select distinct a.account_id from dns_records a
                         where a.domain = g.domain and a.record_type = g.record_type
                         order by a.account_id)))
from (select domain, record_type from dns_records
      group by domain, record_type having count(distinct account_id) > 1) g;

-- Each RRset to the account of its oldest row.
insert into dns_rrsets (domain, record_type, account_id, created_at, updated_at)
select domain, record_type,
       (select o.account_id from dns_records o
        where o.domain = g.domain and o.record_type = g.record_type order by o.seq limit 1),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
from (select distinct domain, record_type from dns_records) g;

-- Creates still unfinished claim the RRsets nobody owns, each for its oldest request's
-- account (another account's creates there will fail when a worker takes them).
insert or ignore into dns_rrsets (domain, record_type, account_id, created_at, updated_at)
select domain, record_type, account_id,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
from dns_requests
where operation = 'create' and status in ('PENDING', 'PROCESSING')
order by seq;

update dns_records set
    account_id = (select o.account_id from dns_rrsets o
                  where o.domain = dns_records.domain and o.record_type = dns_records.record_type),
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
where account_id <> (select o.account_id from dns_rrsets o
                     where o.domain = dns_records.domain
                       and o.record_type = dns_records.record_type);

-- Duplicates merge into the oldest row of each record.
delete from dns_records
where exists (select 1 from dns_records older
              where older.domain = dns_records.domain
                and older.record_type = dns_records.record_type
                and older.target = dns_records.target
                and coalesce(older.priority, -1) = coalesce(dns_records.priority, -1)
                and older.seq < dns_records.seq);

-- An adoption writes several rows for one request, so request_id is no longer unique;
-- SQLite drops a column constraint only by rebuilding the table.
create table dns_records_next (
    seq integer primary key autoincrement,
    id text not null unique,
    request_id text not null references dns_requests (id),
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
insert into dns_records_next select seq, id, request_id, account_id, record_type, domain, target,
    comment, ttl, priority, zone, provisioned_at, created_at, updated_at from dns_records;
drop table dns_records;
alter table dns_records_next rename to dns_records;

create index dns_records_by_rrset on dns_records (domain, record_type);
create index dns_records_by_account on dns_records (account_id, seq);
create unique index dns_records_unique_record
    on dns_records (domain, record_type, target, coalesce(priority, -1));
