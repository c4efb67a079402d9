-- no-transaction
-- dns_requests_unfinished (20261204000003) replaces the index without UNKNOWN.
drop index concurrently if exists dns_requests_unfinished_by_name;
