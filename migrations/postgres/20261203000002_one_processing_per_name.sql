-- At most one request per owner name is PROCESSING: a database invariant, not only the claim's
-- condition. A claim that would make a second one fails on this index (or waits for the
-- first's transaction and then fails), whatever order the requests became visible in.
--
-- Names that have several PROCESSING requests now (possible before this version, when a late
-- commit let a newer request be claimed first) keep the oldest; the others go back to PENDING
-- with their lease cleared, so their workers' finishes are refused (the lease is gone) and
-- the requests run again in order.
update dns_requests r set status = 'PENDING', lease_token = null, lease_expires_at = null,
    enqueued_at = null, next_attempt_at = now(), updated_at = now(),
    log_messages = log_messages || jsonb_build_array(jsonb_build_object(
        'at', now(), 'level', 'warning',
        'message', 'another request for this name was processing at the same time; '
            || 'returned to PENDING by the upgrade so that one name''s changes run one at a time'))
where r.status = 'PROCESSING' and exists (
    select 1 from dns_requests o
    where o.domain = r.domain and o.status = 'PROCESSING' and o.seq < r.seq);

create unique index dns_requests_one_processing_per_name
    on dns_requests (domain) where status = 'PROCESSING';
