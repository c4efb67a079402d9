-- Admission in one function: the insert statement of every request calls dnsorch_admit instead
-- of joining dnsorch_room_for and a claim of its own. One call makes the whole decision with
-- fresh snapshots after the per-name lock, so the insert's plan stays small (a cheaper
-- statement per accepted request) and a create that waited for a concurrent claim of the same
-- RRset sees that claim's owner at once.
--
-- dnsorch_room_for stays for binaries of the previous version during an upgrade.

-- Whether a request of `p_op` by `p_account` for the RRset (p_domain, p_type) may be stored:
--   every   first the owner name's advisory lock, held to the end of the inserting
--           transaction: inserts for one name take turns, and the row's seq (its default is
--           evaluated after this condition) is taken under the lock, so one name's requests
--           are numbered in the order they commit and a claim, which waits for every older
--           unfinished request of the name, cannot overtake one that commits late;
--   adopt   then always (admins only, checked before);
--   other   the account has fewer than p_max unfinished requests for the name (each query of
--           a volatile function takes a fresh snapshot, so the count includes every insert
--           that held the lock before), and
--   create  the RRset is claimed for the account (the primary key decides between racing
--           accounts: the second waits for the first's row, then sees its owner), or is the
--           account's already;
--   delete  no other account owns the RRset.
create function dnsorch_admit(p_op text, p_domain text, p_type text, p_account text, p_max bigint)
returns boolean language plpgsql volatile as $$
begin
    perform pg_advisory_xact_lock(hashtextextended('name ' || p_domain, 0));
    if p_op = 'adopt' then
        return true;
    end if;
    -- `account_id || ''`: not an index condition, so the plan is always the name's unfinished
    -- requests (dns_requests_unfinished_by_name). A plan cached while the table was nearly
    -- empty could otherwise walk dns_requests_by_account: every request the account ever made.
    if (select count(*) from (select 1 from dns_requests
            where domain = p_domain and account_id || '' = p_account
              and status in ('PENDING', 'PROCESSING') limit p_max) unfinished) >= p_max then
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
