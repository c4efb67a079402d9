-- no-transaction
-- A set's requests in order, and an atomic lead's members. Built concurrently, so writes go on
-- meanwhile (one statement: a concurrent build cannot share a transaction). An interrupted
-- build leaves an invalid index: drop it and start again.
create index concurrently if not exists dns_requests_by_change_set
    on dns_requests (change_set_id, change_set_index) where change_set_id is not null;
