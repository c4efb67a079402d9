//! What a finished attempt does to the ledger (`dns_records`) and to RRset ownership
//! (`dns_rrsets`), decided once for both stores. Each store writes the steps in its own SQL
//! ([`Ledger`], on the connection of the finish's unit: PostgreSQL's transaction, SQLite's
//! savepoint in the writer's batch), so an outcome and its ledger change are one unit.

use super::rows::Columns;
use super::{DnsRequest, Outcome, StoreError};
use crate::domain::{LiveRrset, Operation, RecordType, RequestId, RequestStatus};

/// The ledger's writes, each one statement or a few of one store.
pub(super) trait Ledger {
    /// One ledger row for `request`'s RRset, unless the record is there already.
    async fn insert_record(
        &mut self,
        request: &DnsRequest,
        target: &str,
        priority: Option<u16>,
        ttl: u32,
    ) -> Result<(), StoreError>;

    /// Every ledger row of `request`'s RRset gets `ttl` (TTL belongs to the RRset, and the
    /// latest change sets it).
    async fn set_ttl(&mut self, request: &DnsRequest, ttl: u32) -> Result<(), StoreError>;

    /// The account's row of `request`'s RRset holding this record, or with an empty `target`
    /// all the account's rows of the RRset.
    async fn remove_records(
        &mut self,
        request: &DnsRequest,
        target: &str,
        priority: Option<u16>,
    ) -> Result<(), StoreError>;

    /// Every ledger row of `request`'s RRset removed, whoever's.
    async fn clear_rrset(&mut self, request: &DnsRequest) -> Result<(), StoreError>;

    /// Every ledger row of `request`'s RRset given to the request's account.
    async fn give_rows(&mut self, request: &DnsRequest) -> Result<(), StoreError>;

    /// `request`'s RRset given to the request's account, whoever owned it.
    async fn take_over(&mut self, request: &DnsRequest) -> Result<(), StoreError>;

    /// Ends the account's ownership of the RRset if nothing holds it: no ledger row and no
    /// other unfinished request of the account for the RRset.
    async fn release_if_idle(&mut self, held: &Held) -> Result<(), StoreError>;
}

/// What a finished request held: its RRset, account and id.
#[derive(Debug)]
pub(super) struct Held {
    pub domain: String,
    pub record_type: RecordType,
    pub account_id: String,
    pub id: RequestId,
}

impl Held {
    fn of(request: &DnsRequest) -> Self {
        Self {
            domain: request.domain.clone(),
            record_type: request.record_type,
            account_id: request.account_id.clone(),
            id: request.id,
        }
    }

    /// From a row with the request's `domain`, `record_type`, `account_id` and `id`.
    fn from_row<R: Columns>(row: &R) -> Result<Self, StoreError> {
        Ok(Self {
            domain: row.get("domain")?,
            record_type: row.get("record_type")?,
            account_id: row.get("account_id")?,
            id: row.get("id")?,
        })
    }
}

/// What `outcome` of `request` does to the ledger and to ownership.
pub(super) async fn settle<L: Ledger>(
    ledger: &mut L,
    request: &DnsRequest,
    outcome: &Outcome,
) -> Result<(), StoreError> {
    match (outcome, request.operation) {
        // The RRset is the account's already: claimed by the create's insert, and the worker
        // checked it. A record already held is left as it is.
        (Outcome::Completed { .. }, Operation::Create) => {
            let ttl = request.config.ttl;
            for record in &request.records {
                ledger
                    .insert_record(request, &record.target(), record.priority(), ttl)
                    .await?;
            }
            ledger.set_ttl(request, ttl).await
        }
        (Outcome::Completed { .. }, Operation::Delete) => {
            if request.records.is_empty() {
                ledger.remove_records(request, "", None).await?;
            }
            for record in &request.records {
                ledger
                    .remove_records(request, &record.target(), record.priority())
                    .await?;
            }
            ledger.release_if_idle(&Held::of(request)).await
        }
        // The RRset is exactly the request's records (the worker checked that every row it
        // held was the account's); it is the account's, claimed at intake.
        (Outcome::Completed { .. }, Operation::Replace) => {
            ledger.clear_rrset(request).await?;
            for record in &request.records {
                ledger
                    .insert_record(
                        request,
                        &record.target(),
                        record.priority(),
                        request.config.ttl,
                    )
                    .await?;
            }
            Ok(())
        }
        (Outcome::Completed { .. }, Operation::Adopt) => adopt(ledger, request, None).await,
        (Outcome::Adopted { live, .. }, _) => adopt(ledger, request, live.as_ref()).await,
        (Outcome::Failed { .. }, _) => ledger.release_if_idle(&Held::of(request)).await,
        (Outcome::Retry { .. } | Outcome::Unknown { .. }, _) => Ok(()),
    }
}

/// A completed adoption: the RRset becomes the account's, and the ledger holds `live` (or,
/// where the ledger is the live state, keeps its rows for the new owner).
async fn adopt<L: Ledger>(
    ledger: &mut L,
    request: &DnsRequest,
    live: Option<&LiveRrset>,
) -> Result<(), StoreError> {
    match live {
        Some(live) => {
            ledger.clear_rrset(request).await?;
            for record in &live.records {
                ledger
                    .insert_record(request, &record.target(), record.priority(), live.ttl)
                    .await?;
            }
        }
        None => ledger.give_rows(request).await?,
    }
    ledger.take_over(request).await
}

/// After expired leases were released (`rows`: each request's `id`, new `status`, `domain`,
/// `record_type` and `account_id`): the RRset of each request that FAILED is released if
/// idle. The released requests' ids, in the order of `rows`.
pub(super) async fn release_failed<L: Ledger, R: Columns>(
    ledger: &mut L,
    rows: &[R],
) -> Result<Vec<RequestId>, StoreError> {
    let mut released = Vec::with_capacity(rows.len());
    for row in rows {
        match row.get("status")? {
            RequestStatus::Failed => ledger.release_if_idle(&Held::from_row(row)?).await?,
            RequestStatus::Pending
            | RequestStatus::Processing
            | RequestStatus::Completed
            | RequestStatus::Unknown => {}
        }
        released.push(row.get("id")?);
    }
    Ok(released)
}
