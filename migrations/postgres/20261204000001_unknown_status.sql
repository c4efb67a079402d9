-- The status UNKNOWN: a change was sent but its outcome is not known (the answer was lost,
-- verification did not see it) until a worker queries the server. It is unfinished: later
-- requests for the name wait for it, and it counts against MAX_UNFINISHED_PER_NAME.
--
-- The check constraint is replaced NOT VALID (no scan under the table lock); the next
-- migration validates it, which blocks no writes. The index over unfinished requests is
-- rebuilt with UNKNOWN concurrently by the two after it.
alter table dns_requests drop constraint if exists dns_requests_status_check;
alter table dns_requests add constraint dns_requests_status_check
    check (status in ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'UNKNOWN')) not valid;

-- dnsorch_admit (see 20261203000001) with UNKNOWN among the unfinished.
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
    if p_op = 'create' then
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
