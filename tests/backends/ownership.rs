//! RRset ownership and the unfinished-requests limit, checked against both stores (as
//! `store.rs` does for the rest of the `RequestStore` contract): one account owns an RRset
//! (owner name and type) from its first create to its last record, another account's create or
//! delete there stores nothing, and an adoption hands the RRset over.

use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::Utc;
use dnsorch::domain::{
    ChangeBody, ChangeRequest, LiveRrset, Operation, RecordData, RecordType, RequestId,
    RequestStatus, validate,
};
use dnsorch::store::{
    Claim, DnsRecord, Inserted, Outcome, RequestFilter, RequestStore, no_opening_log,
};
use serde_json::json;

use crate::store::{TestStore, postgres_store, sqlite_store};

const LEASE: Duration = Duration::from_secs(30);
/// `MAX_UNFINISHED_PER_NAME` for the tests that are not about it.
const UNFINISHED: u32 = 100;

macro_rules! ownership_battery {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $check() { super::$check(super::sqlite_store().await).await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $check() { super::$check(super::postgres_store().await).await; })*
        }
    };
}

ownership_battery!(
    another_accounts_create_or_delete_in_an_owned_rrset_stores_nothing,
    accounts_racing_into_an_unowned_rrset_leave_it_to_one_of_them,
    concurrent_batches_into_an_unowned_rrset_leave_it_to_one_account,
    ownership_is_released_when_the_first_request_fails_before_anything_was_applied,
    ownership_is_kept_while_the_account_has_another_request_or_a_record,
    ownership_ends_with_the_last_record,
    creating_a_record_the_account_holds_writes_no_new_ledger_row,
    the_unfinished_limit_refuses_requests_beyond_it_per_account_and_name,
    a_batch_answers_busy_and_not_owner_in_order,
    an_adoption_gives_the_rrset_and_its_ledger_to_the_adopting_account,
    an_expired_lease_that_fails_the_request_releases_the_rrset,
    concurrent_inserts_for_one_name_never_pass_the_unfinished_limit,
);

/// A change by `account` at `domain`: a record of `record_type` with `target` (`None`: a
/// delete of the whole RRset, or an adoption), with `ttl` if given.
pub(crate) fn change(
    account: &str,
    operation: Operation,
    domain: &str,
    record_type: &str,
    target: Option<&str>,
    ttl: Option<u32>,
) -> ChangeRequest {
    let mut resource = json!({"record_type": record_type, "domain": domain});
    if let Some(target) = target {
        resource["target"] = json!(target);
    }
    if let Some(ttl) = ttl {
        resource["config"] = json!({"ttl": ttl});
    }
    let body: ChangeBody =
        serde_json::from_value(json!({"context": {"account_id": account}, "resource": resource}))
            .unwrap();
    validate(body, operation, None, 4096).unwrap()
}

pub(crate) fn create(account: &str, domain: &str, target: &str) -> ChangeRequest {
    change(account, Operation::Create, domain, "A", Some(target), None)
}

pub(crate) fn delete(account: &str, domain: &str, target: Option<&str>) -> ChangeRequest {
    change(account, Operation::Delete, domain, "A", target, None)
}

pub(crate) fn adopt(account: &str, domain: &str) -> ChangeRequest {
    change(account, Operation::Adopt, domain, "A", None, None)
}

/// Inserts `change`, which must be stored; its id.
async fn created(store: &dyn RequestStore, change: &ChangeRequest, limit: u32) -> RequestId {
    match store.insert(change, limit).await.unwrap() {
        Inserted::Created(request) => {
            assert_eq!(request.account_id, change.account_id);
            assert_eq!(request.status, RequestStatus::Pending);
            request.id
        }
        other => panic!("expected a new request for {change:?}, got {other:?}"),
    }
}

/// How many requests are stored, in any status.
async fn request_count(store: &dyn RequestStore) -> i64 {
    store
        .count_by_status()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum()
}

async fn claim(store: &dyn RequestStore, id: RequestId) -> Claim {
    store
        .claim(Some(id), LEASE, no_opening_log())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("request {id:?} is not claimable"))
}

/// Claims request `id` and finishes it with `outcome`.
async fn finish(store: &dyn RequestStore, id: RequestId, outcome: Outcome) {
    let claimed = claim(store, id).await;
    assert!(store.finish(&claimed, &outcome, &[]).await.unwrap());
}

pub(crate) fn completed() -> Outcome {
    Outcome::Completed {
        applied_at: Utc::now(),
        verified_at: Some(Utc::now()),
        rrsets: None,
    }
}

fn failed() -> Outcome {
    Outcome::Failed {
        error: "REFUSED".into(),
    }
}

/// Inserts `change` and completes it.
async fn apply(store: &dyn RequestStore, change: &ChangeRequest) -> RequestId {
    let id = created(store, change, UNFINISHED).await;
    finish(store, id, completed()).await;
    id
}

async fn owner(store: &dyn RequestStore, domain: &str, record_type: RecordType) -> Option<String> {
    store.rrset(domain, record_type).await.unwrap().0
}

/// The A RRset's ledger rows as (account, target, ttl), sorted, and its owner.
async fn rrset(
    store: &dyn RequestStore,
    domain: &str,
) -> (Option<String>, Vec<(String, String, u32)>) {
    let (owner, rows) = store.rrset(domain, RecordType::A).await.unwrap();
    let mut rows: Vec<(String, String, u32)> = rows
        .into_iter()
        .map(|r: DnsRecord| (r.account_id, r.target, r.ttl))
        .collect();
    rows.sort();
    (owner, rows)
}

fn row(account: &str, target: &str, ttl: u32) -> (String, String, u32) {
    (account.to_owned(), target.to_owned(), ttl)
}

fn acct(account: &str) -> Option<String> {
    Some(account.to_owned())
}

async fn another_accounts_create_or_delete_in_an_owned_rrset_stores_nothing(t: TestStore) {
    let store = &*t.store;
    let first = created(
        store,
        &create("acct-1", "www.example.test", "192.0.2.1"),
        UNFINISHED,
    )
    .await;
    assert_eq!(
        owner(store, "www.example.test", RecordType::A).await,
        acct("acct-1"),
        "the insert of the first create claims the RRset"
    );
    let refused = [
        create("acct-2", "www.example.test", "192.0.2.2"),
        create("acct-2", "www.example.test", "192.0.2.1"),
        delete("acct-2", "www.example.test", Some("192.0.2.1")),
        delete("acct-2", "www.example.test", None),
    ];
    let before = request_count(store).await;
    for change in &refused {
        let answer = store.insert(change, UNFINISHED).await.unwrap();
        assert!(
            matches!(answer, Inserted::NotOwner),
            "{change:?}: {answer:?}"
        );
    }
    assert_eq!(
        request_count(store).await,
        before,
        "a refusal stores nothing"
    );

    // Still refused once the owner's record is in the ledger.
    finish(store, first, completed()).await;
    for change in &refused {
        let answer = store.insert(change, UNFINISHED).await.unwrap();
        assert!(
            matches!(answer, Inserted::NotOwner),
            "{change:?}: {answer:?}"
        );
    }
    assert_eq!(request_count(store).await, before);
    let theirs = RequestFilter {
        account_id: Some("acct-2".into()),
        limit: 10,
        ..Default::default()
    };
    assert!(store.list(&theirs).await.unwrap().is_empty());

    // The owner goes on as before.
    created(
        store,
        &create("acct-1", "www.example.test", "192.0.2.3"),
        UNFINISHED,
    )
    .await;
    created(
        store,
        &delete("acct-1", "www.example.test", Some("192.0.2.1")),
        UNFINISHED,
    )
    .await;
    assert_eq!(request_count(store).await, before + 2);

    // Another type at the name is another RRset: acct-2 may claim it, and then acct-1 may not.
    let aaaa = change(
        "acct-2",
        Operation::Create,
        "www.example.test",
        "AAAA",
        Some("2001:db8::1"),
        None,
    );
    created(store, &aaaa, UNFINISHED).await;
    assert_eq!(
        owner(store, "www.example.test", RecordType::Aaaa).await,
        acct("acct-2")
    );
    assert_eq!(
        owner(store, "www.example.test", RecordType::A).await,
        acct("acct-1")
    );
    let mut theirs_now = aaaa.clone();
    theirs_now.account_id = "acct-1".into();
    assert!(matches!(
        store.insert(&theirs_now, UNFINISHED).await.unwrap(),
        Inserted::NotOwner
    ));
    assert_eq!(request_count(store).await, before + 3);
}

async fn accounts_racing_into_an_unowned_rrset_leave_it_to_one_of_them(t: TestStore) {
    // Several rounds, each into an RRset of its own, to give a lost race more chances to show.
    for round in 0..16 {
        let domain = format!("race{round}.example.test");
        let changes: Vec<ChangeRequest> = (0..16)
            .map(|i| {
                create(
                    &format!("acct-{}", i % 8),
                    &domain,
                    &format!("192.0.2.{}", i + 1),
                )
            })
            .collect();
        let inserts = changes.iter().map(|c| t.store.insert(c, UNFINISHED));
        let answers: Vec<Inserted> = futures::future::join_all(inserts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();

        let winners: Vec<&str> = answers
            .iter()
            .filter_map(|a| match a {
                Inserted::Created(r) => Some(r.account_id.as_str()),
                _ => None,
            })
            .collect();
        let refused = answers
            .iter()
            .filter(|a| matches!(a, Inserted::NotOwner))
            .count();
        assert!(!winners.is_empty(), "{answers:?}");
        let winner = winners[0].to_owned();
        assert!(winners.iter().all(|w| *w == winner), "{winners:?}");
        // The winner's two changes both get in; every other account's is refused.
        assert_eq!((winners.len(), refused), (2, 14), "{answers:?}");
        assert_eq!(
            owner(&*t.store, &domain, RecordType::A).await,
            Some(winner.clone())
        );
        let stored = RequestFilter {
            domain: Some(domain.clone()),
            limit: 100,
            ..Default::default()
        };
        let stored = t.store.list(&stored).await.unwrap();
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|r| r.account_id == winner));
    }
}

async fn concurrent_batches_into_an_unowned_rrset_leave_it_to_one_account(t: TestStore) {
    // A batch is one transaction: its claim is uncommitted while the rest of the batch is
    // written, which is when the other batches try the same RRset.
    let batches: Vec<Vec<ChangeRequest>> = (0..8)
        .map(|a| {
            let account = format!("acct-{a}");
            let mut batch = vec![create(&account, "contended.example.test", "192.0.2.1")];
            batch.extend((0..100).map(|i| {
                create(
                    &account,
                    &format!("n{i}.{account}.example.test"),
                    "192.0.2.1",
                )
            }));
            batch
        })
        .collect();
    let inserts = batches.iter().map(|b| t.store.insert_many(b, UNFINISHED));
    let answers: Vec<Vec<Inserted<RequestId>>> = futures::future::join_all(inserts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let winners: Vec<usize> = (0..8)
        .filter(|a| matches!(answers[*a][0], Inserted::Created(_)))
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        answers.iter().map(|a| &a[0]).collect::<Vec<_>>()
    );
    for (a, batch) in answers.iter().enumerate() {
        if a != winners[0] {
            assert!(matches!(batch[0], Inserted::NotOwner), "{:?}", batch[0]);
        }
        assert!(
            batch[1..].iter().all(|i| matches!(i, Inserted::Created(_))),
            "the rest of every batch is stored"
        );
    }
    let winner = format!("acct-{}", winners[0]);
    assert_eq!(
        owner(&*t.store, "contended.example.test", RecordType::A).await,
        Some(winner.clone())
    );
    let contended = RequestFilter {
        domain: Some("contended.example.test".into()),
        limit: 100,
        ..Default::default()
    };
    let stored = t.store.list(&contended).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].account_id, winner);
    assert_eq!(request_count(&*t.store).await, 1 + 8 * 100);
}

async fn ownership_is_released_when_the_first_request_fails_before_anything_was_applied(
    t: TestStore,
) {
    let store = &*t.store;
    let id = created(
        store,
        &create("acct-1", "www.example.test", "192.0.2.1"),
        UNFINISHED,
    )
    .await;
    assert!(matches!(
        store
            .insert(
                &create("acct-2", "www.example.test", "192.0.2.2"),
                UNFINISHED
            )
            .await
            .unwrap(),
        Inserted::NotOwner
    ));

    finish(store, id, failed()).await;

    assert_eq!(
        store.get(id).await.unwrap().unwrap().status,
        RequestStatus::Failed
    );
    assert_eq!(rrset(store, "www.example.test").await, (None, vec![]));
    let theirs = created(
        store,
        &create("acct-2", "www.example.test", "192.0.2.2"),
        UNFINISHED,
    )
    .await;
    assert_eq!(
        owner(store, "www.example.test", RecordType::A).await,
        acct("acct-2")
    );
    finish(store, theirs, completed()).await;
    assert_eq!(
        rrset(store, "www.example.test").await,
        (acct("acct-2"), vec![row("acct-2", "192.0.2.2", 300)])
    );
}

async fn ownership_is_kept_while_the_account_has_another_request_or_a_record(t: TestStore) {
    let store = &*t.store;
    // Two unfinished creates: the first failing leaves the RRset to the second.
    let first = created(
        store,
        &create("acct-1", "www.example.test", "192.0.2.1"),
        UNFINISHED,
    )
    .await;
    let second = created(
        store,
        &create("acct-1", "www.example.test", "192.0.2.2"),
        UNFINISHED,
    )
    .await;
    finish(store, first, failed()).await;
    assert_eq!(
        owner(store, "www.example.test", RecordType::A).await,
        acct("acct-1")
    );
    assert!(matches!(
        store
            .insert(
                &create("acct-2", "www.example.test", "192.0.2.3"),
                UNFINISHED
            )
            .await
            .unwrap(),
        Inserted::NotOwner
    ));
    // The second one failing too releases it.
    finish(store, second, failed()).await;
    assert_eq!(owner(store, "www.example.test", RecordType::A).await, None);

    // A failed create beside a record in the ledger keeps the RRset.
    apply(store, &create("acct-1", "held.example.test", "192.0.2.1")).await;
    let doomed = created(
        store,
        &create("acct-1", "held.example.test", "192.0.2.2"),
        UNFINISHED,
    )
    .await;
    finish(store, doomed, failed()).await;
    assert_eq!(
        rrset(store, "held.example.test").await,
        (acct("acct-1"), vec![row("acct-1", "192.0.2.1", 300)])
    );
    // And so does a failed delete.
    let delete = created(
        store,
        &delete("acct-1", "held.example.test", None),
        UNFINISHED,
    )
    .await;
    finish(store, delete, failed()).await;
    assert_eq!(
        owner(store, "held.example.test", RecordType::A).await,
        acct("acct-1")
    );
    assert!(matches!(
        store
            .insert(
                &create("acct-2", "held.example.test", "192.0.2.3"),
                UNFINISHED
            )
            .await
            .unwrap(),
        Inserted::NotOwner
    ));
}

async fn ownership_ends_with_the_last_record(t: TestStore) {
    let store = &*t.store;
    // Ended by a delete of the whole RRset.
    apply(store, &create("acct-1", "www.example.test", "192.0.2.1")).await;
    apply(store, &create("acct-1", "www.example.test", "192.0.2.2")).await;
    apply(
        store,
        &delete("acct-1", "www.example.test", Some("192.0.2.1")),
    )
    .await;
    assert_eq!(
        rrset(store, "www.example.test").await,
        (acct("acct-1"), vec![row("acct-1", "192.0.2.2", 300)]),
        "a record is left: still owned"
    );
    apply(store, &delete("acct-1", "www.example.test", None)).await;
    assert_eq!(rrset(store, "www.example.test").await, (None, vec![]));
    apply(store, &create("acct-2", "www.example.test", "192.0.2.9")).await;
    assert_eq!(
        rrset(store, "www.example.test").await,
        (acct("acct-2"), vec![row("acct-2", "192.0.2.9", 300)])
    );

    // Ended by a delete of the last record by its target.
    apply(store, &create("acct-1", "last.example.test", "192.0.2.1")).await;
    apply(
        store,
        &delete("acct-1", "last.example.test", Some("192.0.2.1")),
    )
    .await;
    assert_eq!(rrset(store, "last.example.test").await, (None, vec![]));

    // Not ended while the account has another unfinished request for the RRset: the create
    // submitted after the delete keeps it.
    apply(store, &create("acct-1", "busy.example.test", "192.0.2.1")).await;
    let emptied = created(
        store,
        &delete("acct-1", "busy.example.test", None),
        UNFINISHED,
    )
    .await;
    let pending = created(
        store,
        &create("acct-1", "busy.example.test", "192.0.2.2"),
        UNFINISHED,
    )
    .await;
    finish(store, emptied, completed()).await;
    assert_eq!(
        rrset(store, "busy.example.test").await,
        (acct("acct-1"), vec![])
    );
    assert!(matches!(
        store
            .insert(
                &create("acct-2", "busy.example.test", "192.0.2.3"),
                UNFINISHED
            )
            .await
            .unwrap(),
        Inserted::NotOwner
    ));
    finish(store, pending, completed()).await;
    assert_eq!(
        rrset(store, "busy.example.test").await,
        (acct("acct-1"), vec![row("acct-1", "192.0.2.2", 300)])
    );
}

async fn creating_a_record_the_account_holds_writes_no_new_ledger_row(t: TestStore) {
    let store = &*t.store;
    let first = apply(store, &create("acct-1", "www.example.test", "192.0.2.1")).await;
    let again = apply(store, &create("acct-1", "www.example.test", "192.0.2.1")).await;

    let (owner, rows) = store
        .rrset("www.example.test", RecordType::A)
        .await
        .unwrap();
    assert_eq!(owner, acct("acct-1"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].request_id, first,
        "the row of the first create stays"
    );
    assert_eq!(
        store.get(again).await.unwrap().unwrap().status,
        RequestStatus::Completed
    );

    // The same record with another TTL: still one row, with the new TTL (the RRset's).
    let ttl = change(
        "acct-1",
        Operation::Create,
        "www.example.test",
        "A",
        Some("192.0.2.1"),
        Some(900),
    );
    apply(store, &ttl).await;
    let (_, rows) = store
        .rrset("www.example.test", RecordType::A)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].request_id, rows[0].ttl), (first, 900));

    // Priority is part of the record: MX 10 and MX 20 to one exchange are two records.
    for priority in [10, 20, 10] {
        let body: ChangeBody = serde_json::from_value(json!({
            "context": {"account_id": "acct-1"},
            "resource": {"record_type": "MX", "domain": "www.example.test",
                         "target": "mail.example.test", "config": {"priority": priority}}
        }))
        .unwrap();
        apply(
            store,
            &validate(body, Operation::Create, None, 4096).unwrap(),
        )
        .await;
    }
    let (_, rows) = store
        .rrset("www.example.test", RecordType::Mx)
        .await
        .unwrap();
    let mut priorities: Vec<Option<u16>> = rows.iter().map(|r| r.priority).collect();
    priorities.sort();
    assert_eq!(priorities, [Some(10), Some(20)]);
}

async fn the_unfinished_limit_refuses_requests_beyond_it_per_account_and_name(t: TestStore) {
    const LIMIT: u32 = 3;
    let store = &*t.store;
    let mut ids = Vec::new();
    for target in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        ids.push(created(store, &create("acct-1", "www.example.test", target), LIMIT).await);
    }
    let before = request_count(store).await;
    let over = [
        create("acct-1", "www.example.test", "192.0.2.4"),
        delete("acct-1", "www.example.test", None),
        // The limit is per owner name, whatever the type.
        change(
            "acct-1",
            Operation::Create,
            "www.example.test",
            "AAAA",
            Some("2001:db8::1"),
            None,
        ),
    ];
    for change in &over {
        let answer = store.insert(change, LIMIT).await.unwrap();
        assert!(matches!(answer, Inserted::Busy), "{change:?}: {answer:?}");
    }
    assert_eq!(
        request_count(store).await,
        before,
        "a refusal stores nothing"
    );

    // Another name of the account, and another account at another name, are not limited.
    created(
        store,
        &create("acct-1", "other.example.test", "192.0.2.1"),
        LIMIT,
    )
    .await;
    created(
        store,
        &create("acct-2", "third.example.test", "192.0.2.1"),
        LIMIT,
    )
    .await;

    // A claimed request is still unfinished, and so is one waiting for a retry.
    let claimed = claim(store, ids[0]).await;
    assert!(matches!(
        store.insert(&over[0], LIMIT).await.unwrap(),
        Inserted::Busy
    ));
    let retry = Outcome::Retry {
        error: "SERVFAIL".into(),
        retry_in: Duration::ZERO,
    };
    assert!(store.finish(&claimed, &retry, &[]).await.unwrap());
    assert!(matches!(
        store.insert(&over[0], LIMIT).await.unwrap(),
        Inserted::Busy
    ));

    // One finished: room for one more.
    finish(store, ids[0], completed()).await;
    created(store, &over[0], LIMIT).await;
    assert!(matches!(
        store
            .insert(&create("acct-1", "www.example.test", "192.0.2.5"), LIMIT)
            .await
            .unwrap(),
        Inserted::Busy
    ));
    assert_eq!(request_count(store).await, before + 3);
}

async fn a_batch_answers_busy_and_not_owner_in_order(t: TestStore) {
    const LIMIT: u32 = 3;
    let store = &*t.store;
    let batch: Vec<ChangeRequest> = (1..=5)
        .map(|i| create("acct-1", "www.example.test", &format!("192.0.2.{i}")))
        .collect();

    let answers = store.insert_many(&batch, LIMIT).await.unwrap();

    assert_eq!(answers.len(), 5);
    assert!(
        answers[..3]
            .iter()
            .all(|a| matches!(a, Inserted::Created(_))),
        "{answers:?}"
    );
    assert!(
        answers[3..].iter().all(|a| matches!(a, Inserted::Busy)),
        "{answers:?}"
    );
    let stored = store
        .list(&RequestFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut targets: Vec<&str> = stored.iter().map(|r| r.target.as_str()).collect();
    targets.sort_unstable();
    assert_eq!(targets, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);

    // Ownership within a batch: a claim by an earlier change counts for the later ones.
    let mixed = [
        create("acct-2", "www.example.test", "192.0.2.9"),
        create("acct-2", "new.example.test", "192.0.2.1"),
        create("acct-3", "new.example.test", "192.0.2.2"),
        create("acct-2", "new.example.test", "192.0.2.3"),
    ];
    let answers = store.insert_many(&mixed, LIMIT).await.unwrap();
    assert!(
        matches!(
            answers[..],
            [
                Inserted::NotOwner,
                Inserted::Created(_),
                Inserted::NotOwner,
                Inserted::Created(_)
            ]
        ),
        "{answers:?}"
    );
    assert_eq!(request_count(store).await, 5);
    assert_eq!(
        owner(store, "new.example.test", RecordType::A).await,
        acct("acct-2")
    );
}

async fn an_adoption_gives_the_rrset_and_its_ledger_to_the_adopting_account(t: TestStore) {
    let store = &*t.store;
    apply(store, &create("acct-1", "www.example.test", "192.0.2.1")).await;
    apply(store, &create("acct-1", "www.example.test", "192.0.2.2")).await;
    // acct-2 has an unfinished request at the name (another type): with a limit of 1 it is
    // busy there, which an adoption does not heed, nor acct-1's ownership.
    let aaaa = change(
        "acct-2",
        Operation::Create,
        "www.example.test",
        "AAAA",
        Some("2001:db8::1"),
        None,
    );
    let aaaa = created(store, &aaaa, 1).await;
    let adoption = created(store, &adopt("acct-2", "www.example.test"), 1).await;
    assert_eq!(
        store.get(adoption).await.unwrap().unwrap().operation,
        Operation::Adopt
    );
    finish(store, aaaa, completed()).await;

    finish(
        store,
        adoption,
        Outcome::Adopted {
            at: Utc::now(),
            live: None,
        },
    )
    .await;

    assert_eq!(
        rrset(store, "www.example.test").await,
        (
            acct("acct-2"),
            vec![
                row("acct-2", "192.0.2.1", 300),
                row("acct-2", "192.0.2.2", 300)
            ]
        )
    );
    assert_eq!(
        store.get(adoption).await.unwrap().unwrap().status,
        RequestStatus::Completed
    );
    assert!(matches!(
        store
            .insert(
                &create("acct-1", "www.example.test", "192.0.2.3"),
                UNFINISHED
            )
            .await
            .unwrap(),
        Inserted::NotOwner
    ));
    apply(store, &create("acct-2", "www.example.test", "192.0.2.3")).await;

    // An adoption that read the live RRset: the ledger is exactly what the server holds.
    let adoption = created(store, &adopt("acct-3", "www.example.test"), UNFINISHED).await;
    let live = LiveRrset {
        ttl: 600,
        records: vec![
            RecordData::A(Ipv4Addr::new(192, 0, 2, 7)),
            RecordData::A(Ipv4Addr::new(192, 0, 2, 8)),
        ],
    };
    finish(
        store,
        adoption,
        Outcome::Adopted {
            at: Utc::now(),
            live: Some(live),
        },
    )
    .await;

    assert_eq!(
        rrset(store, "www.example.test").await,
        (
            acct("acct-3"),
            vec![
                row("acct-3", "192.0.2.7", 600),
                row("acct-3", "192.0.2.8", 600)
            ]
        )
    );
    let (_, rows) = store
        .rrset("www.example.test", RecordType::A)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.request_id == adoption), "{rows:?}");
    assert_eq!(
        owner(store, "www.example.test", RecordType::Aaaa).await,
        acct("acct-2"),
        "the other type is another RRset"
    );
    for account in ["acct-1", "acct-2"] {
        assert!(matches!(
            store
                .insert(&delete(account, "www.example.test", None), UNFINISHED)
                .await
                .unwrap(),
            Inserted::NotOwner
        ));
    }
}

async fn an_expired_lease_that_fails_the_request_releases_the_rrset(t: TestStore) {
    let store = &*t.store;
    let id = created(
        store,
        &create("acct-1", "www.example.test", "192.0.2.1"),
        UNFINISHED,
    )
    .await;
    let lapse = async || {
        store
            .claim(Some(id), Duration::from_millis(1), no_opening_log())
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    };

    // Attempts left: back to PENDING, still the account's.
    lapse().await;
    assert_eq!(store.release_expired_leases(2).await.unwrap(), [id]);
    assert_eq!(
        store.get(id).await.unwrap().unwrap().status,
        RequestStatus::Pending
    );
    assert_eq!(
        owner(store, "www.example.test", RecordType::A).await,
        acct("acct-1")
    );

    // Attempts used up: FAILED, and the RRset is free.
    lapse().await;
    assert_eq!(store.release_expired_leases(1).await.unwrap(), [id]);
    assert_eq!(
        store.get(id).await.unwrap().unwrap().status,
        RequestStatus::Failed
    );
    assert_eq!(owner(store, "www.example.test", RecordType::A).await, None);
    created(
        store,
        &create("acct-2", "www.example.test", "192.0.2.2"),
        UNFINISHED,
    )
    .await;
    assert_eq!(
        owner(store, "www.example.test", RecordType::A).await,
        acct("acct-2")
    );
}

async fn concurrent_inserts_for_one_name_never_pass_the_unfinished_limit(t: TestStore) {
    // Rounds of 16 inserts at once by one account for one name, limit 3: each round stores
    // exactly 3 (a count taken from a snapshot would let more through).
    for round in 0..8 {
        let domain = format!("flood{round}.example.test");
        let changes: Vec<ChangeRequest> = (0..16)
            .map(|i| create("acct-1", &domain, &Ipv4Addr::new(192, 0, 2, i).to_string()))
            .collect();
        let answers = futures::future::join_all(changes.iter().map(|c| t.store.insert(c, 3))).await;
        let created = answers
            .iter()
            .filter(|a| matches!(a, Ok(Inserted::Created(_))))
            .count();
        let busy = answers
            .iter()
            .filter(|a| matches!(a, Ok(Inserted::Busy)))
            .count();
        assert_eq!((created, busy), (3, 13), "round {round}: {answers:?}");
        let stored = t
            .store
            .list(&RequestFilter {
                domain: Some(domain.clone()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 3, "round {round}");
    }
}

/// PostgreSQL only (SQLite has one writer, so nothing runs beside a finish): a create of the
/// owner that claimed the RRset while the owner's first request fails. The create's claim is
/// played by hand in an open transaction, which holds the owner row's lock (as the insert's
/// upsert does) and adds the request; the failure's finish runs meanwhile and must wait for
/// it, then see the request and keep the RRset owned.
#[tokio::test]
async fn postgres_a_failure_beside_a_concurrent_create_of_the_owner_keeps_the_rrset_owned() {
    let url = crate::support::shared_postgres_database().await;
    let store = dnsorch::store::PostgresStore::open(
        &url,
        Duration::from_secs(2),
        dnsorch::store::Schema::Migrate,
        Duration::ZERO,
        dnsorch::store::InsertBatching::default(),
    )
    .await
    .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let domain = "beside.example.test";
    let first = created(&store, &create("acct-1", domain, "192.0.2.1"), UNFINISHED).await;
    let claimed = claim(&store, first).await;

    // The concurrent create, in flight: the owner row locked, its request inserted.
    let mut create_tx = pool.begin().await.unwrap();
    sqlx::query(
        "update dns_rrsets set updated_at = updated_at where domain = $1 and record_type = 'A'",
    )
    .bind(domain)
    .execute(&mut *create_tx)
    .await
    .unwrap();
    sqlx::query(
        "insert into dns_requests (id, account_id, source, operation, record_type, domain, \
         target, config, status, fingerprint, next_attempt_at, created_at, updated_at) \
         values ($1, 'acct-1', 'api', 'create', 'A', $2, '192.0.2.2', \
         '{\"ttl\": 300, \"priority\": null, \"extra_config\": {}}', 'PENDING', 'f', \
         now(), now(), now())",
    )
    .bind(RequestId::new().0)
    .bind(domain)
    .execute(&mut *create_tx)
    .await
    .unwrap();

    // The failure settles while the create is in flight; then the create commits.
    let failure = failed();
    let finish = store.finish(&claimed, &failure, &[]);
    let commit = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        create_tx.commit().await.unwrap();
    };
    let (finished, ()) = tokio::join!(finish, commit);

    // The RRset stays acct-1's, so acct-2 is refused.
    assert!(finished.unwrap());
    assert_eq!(owner(&store, domain, RecordType::A).await, acct("acct-1"));
    assert!(matches!(
        store
            .insert(&create("acct-2", domain, "192.0.2.3"), UNFINISHED)
            .await
            .unwrap(),
        Inserted::NotOwner
    ));
}

/// PostgreSQL only (its inserts are grouped; SQLite's go one by one through its writer):
/// inserts that arrive together share one statement and one commit, and each still gets its
/// own answer, a refused one beside accepted ones, and one name's requests keep the order they
/// were submitted in.
#[tokio::test]
async fn postgres_concurrent_inserts_share_a_statement_and_keep_their_answers_and_order() {
    let url = crate::support::shared_postgres_database().await;
    let batching = dnsorch::store::InsertBatching {
        writers: 1,
        batch_max: 64,
    };
    let store = dnsorch::store::PostgresStore::open(
        &url,
        Duration::from_secs(2),
        dnsorch::store::Schema::Migrate,
        Duration::ZERO,
        batching,
    )
    .await
    .unwrap();
    created(
        &store,
        &create("acct-1", "taken.example.test", "192.0.2.1"),
        UNFINISHED,
    )
    .await;
    let changes: Vec<ChangeRequest> = (0..30u8)
        .map(|i| match i % 3 {
            0 => create("acct-2", "taken.example.test", "192.0.2.2"),
            _ => create(
                "acct-1",
                "order.example.test",
                &Ipv4Addr::new(192, 0, 2, i).to_string(),
            ),
        })
        .collect();

    let answers =
        futures::future::join_all(changes.iter().map(|c| store.insert(c, UNFINISHED))).await;

    for (change, answer) in changes.iter().zip(&answers) {
        match (change.account_id.as_str(), answer) {
            ("acct-2", Ok(Inserted::NotOwner)) => {}
            ("acct-1", Ok(Inserted::Created(request))) => {
                assert_eq!(request.target, change.target());
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let mut stored = store
        .list(&RequestFilter {
            domain: Some("order.example.test".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    stored.sort_by_key(|r| r.seq);
    let submitted: Vec<String> = changes
        .iter()
        .filter(|c| c.account_id == "acct-1")
        .map(ChangeRequest::target)
        .collect();
    let order: Vec<String> = stored.iter().map(|r| r.target.clone()).collect();
    assert_eq!(order, submitted);
    // One statement, one transaction: the rows share their transaction's now().
    let commits: std::collections::BTreeSet<_> = stored.iter().map(|r| r.created_at).collect();
    assert!(
        commits.len() < stored.len(),
        "no two inserts shared a statement"
    );
    assert_eq!(
        owner(&store, "taken.example.test", RecordType::A).await,
        acct("acct-1")
    );
}
