-- Validates the status check of 20261204000001 (a scan that takes no lock blocking writes).
alter table dns_requests validate constraint dns_requests_status_check;
