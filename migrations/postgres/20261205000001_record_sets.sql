-- Record sets: a request may carry several records and may replace an RRset, and an applied
-- request records the RRset before and after it.
--   targets       every record in zone-file form (a JSON array) when the request has several;
--                 null for one record (target and config.priority hold it, as before) or none.
--   rrset_before  the RRset before and after the applied change, {"ttl": n, "records": [...]}
--   rrset_after   (no records: the RRset was absent); null when not recorded: not applied
--                 yet, or applied by an earlier version.
-- Nullable columns without a default: adding them rewrites no row and blocks writes only for
-- the moment of the catalog change.
alter table dns_requests
    add column if not exists targets jsonb,
    add column if not exists rrset_before jsonb,
    add column if not exists rrset_after jsonb;

-- dnsorch_admit (see 20261204000001): a replace claims an unowned RRset as a create does.
create or replace function dnsorch_admit(p_op text, p_domain text, p_type text, p_account text, p_max bigint)
returns boolean language plpgsql volatile as $$
begin
    perform pg_advisory_xact_lock(hashtextextended('name ' || p_domain, 0));
    if p_op = 'adopt' then
        return true;
    end if;
    -- `account_id || ''`: not an index condition, so the plan is always the name's unfinished
    -- requests (dns_requests_unfinished). A plan cached while the table was nearly
    -- empty could otherwise walk dns_requests_by_account: every request the account ever made.
    if (select count(*) from (select 1 from dns_requests
            where domain = p_domain and account_id || '' = p_account
              and status in ('PENDING', 'PROCESSING', 'UNKNOWN') limit p_max) unfinished) >= p_max then
        return false;
    end if;
    if p_op in ('create', 'replace') then
        insert into dns_rrsets (domain, record_type, account_id, created_at, updated_at)
        values (p_domain, p_type, p_account, now(), now())
        on conflict (domain, record_type) do nothing;
        if found then
            return true;
        end if;
        return exists (select 1 from dns_rrsets
                       where domain = p_domain and record_type = p_type and account_id = p_account);
    end if;
    return not exists (select 1 from dns_rrsets
                       where domain = p_domain and record_type = p_type and account_id <> p_account);
end
$$;
