-- Record sets: a request may carry several records and may replace an RRset, and an applied
-- request records the RRset before and after it.
--   targets       every record in zone-file form (a JSON array) when the request has several;
--                 null for one record (target and config.priority hold it, as before) or none.
--   rrset_before  the RRset before and after the applied change, {"ttl": n, "records": [...]}
--   rrset_after   (no records: the RRset was absent); null when not recorded: not applied
--                 yet, or applied by an earlier version.
alter table dns_requests add column targets text;
alter table dns_requests add column rrset_before text;
alter table dns_requests add column rrset_after text;

-- A replace claims an unowned RRset as a create does.
drop trigger dns_requests_claim_rrset;
create trigger dns_requests_claim_rrset after insert on dns_requests
when new.operation in ('create', 'replace')
begin
    insert or ignore into dns_rrsets (domain, record_type, account_id, created_at, updated_at)
    values (new.domain, new.record_type, new.account_id, new.created_at, new.created_at);
end;
