-- no-transaction
-- The name's unfinished requests, UNKNOWN included: what a claim waits for and what admission
-- counts. Built concurrently, so writes go on meanwhile (one statement: a concurrent build
-- cannot share a transaction). An interrupted build leaves an invalid index: drop it and
-- start again.
create index concurrently if not exists dns_requests_unfinished
    on dns_requests (domain, seq) where status in ('PENDING', 'PROCESSING', 'UNKNOWN');
