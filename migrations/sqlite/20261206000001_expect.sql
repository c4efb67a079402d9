-- Optimistic concurrency: the RRset a request expects to be current, {"ttl": n, "records":
-- [...]} (no records: absent); null when the request has no expectation.
alter table dns_requests add column expect text;
