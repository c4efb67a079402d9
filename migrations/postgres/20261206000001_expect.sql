-- Optimistic concurrency: the RRset a request expects to be current, {"ttl": n, "records":
-- [...]} (no records: absent); null when the request has no expectation. A nullable column
-- without a default: adding it rewrites no row.
alter table dns_requests add column if not exists expect jsonb;
