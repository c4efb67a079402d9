//! Atomic change sets in each store: recorded all or nothing with the set's row, claimed only
//! by the lead and only when every member's name is free of older requests, finished as one
//! (each member with its own RRsets and ledger rows), failed together when the lead's lease
//! runs out of attempts, and never requeued member by member.

use std::time::Duration;

use chrono::Utc;
use dnsorch::domain::{
    BeforeAfter, ChangeBody, ChangeRequest, ChangeSetId, LiveRrset, Operation, RequestStatus,
    SetPlace, SetRole, Submitter, validate,
};
use dnsorch::store::{
    Inserted, NewChangeSet, Outcome, RecordFilter, RequestStore, SetMember, no_opening_log,
};
use serde_json::json;

use crate::store::{TestStore, postgres_store, sqlite_store};

const UNFINISHED: u32 = 100;

macro_rules! set_battery {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $check() { super::$check(super::sqlite_store().await).await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $check() { super::$check(super::postgres_store().await).await; })*
        }
    };
}

set_battery!(
    an_atomic_set_is_claimed_by_its_lead_alone_and_finished_as_one,
    an_atomic_set_that_admission_refuses_in_part_stores_nothing,
    a_lead_waits_for_older_requests_at_its_members_names_and_newer_ones_wait_for_it,
    the_members_fail_with_a_lead_whose_lease_expired_with_no_attempts_left,
    a_set_is_recorded_once_and_listed_newest_first_with_its_requests_counted,
);

fn change(account: &str, record_type: &str, domain: &str, target: &str) -> ChangeRequest {
    let body: ChangeBody = serde_json::from_value(json!({
        "context": {"account_id": account},
        "resource": {"record_type": record_type, "domain": domain, "target": target}
    }))
    .unwrap();
    validate(body, Operation::Create, None, 4096).unwrap()
}

/// The changes as one atomic set: the first is the lead.
fn atomic(changes: Vec<ChangeRequest>) -> (Vec<ChangeRequest>, NewChangeSet) {
    let id = ChangeSetId::for_submission("acct-1", None);
    let count = changes.len();
    let changes = changes
        .into_iter()
        .enumerate()
        .map(|(i, mut change)| {
            change.change_set = Some(SetPlace {
                id,
                index: i as u32,
                role: if i == 0 {
                    SetRole::Lead
                } else {
                    SetRole::Member
                },
            });
            change
        })
        .collect();
    let set = NewChangeSet {
        id,
        account_id: "acct-1".into(),
        atomic: true,
        item_count: count as u32,
        refused: Vec::new(),
        idempotency_key: None,
        fingerprint: "f".into(),
        source: "api".into(),
        submitter: Submitter::default(),
    };
    (changes, set)
}

async fn single(
    store: &dyn RequestStore,
    domain: &str,
    target: &str,
) -> dnsorch::domain::RequestId {
    match store
        .insert(&change("acct-1", "A", domain, target), UNFINISHED)
        .await
        .unwrap()
    {
        Inserted::Created(request) => request.id,
        other => panic!("{other:?}"),
    }
}

async fn record_set(t: &TestStore, changes: Vec<ChangeRequest>) -> Vec<dnsorch::domain::RequestId> {
    let (changes, set) = atomic(changes);
    t.store
        .insert_atomic(&changes, UNFINISHED, &set)
        .await
        .unwrap()
        .into_iter()
        .map(|answer| match answer {
            Inserted::Created(id) => id,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn a(ip: &str) -> dnsorch::domain::RecordData {
    dnsorch::domain::RecordData::parse(dnsorch::domain::RecordType::A, ip, None).unwrap()
}

async fn an_atomic_set_is_claimed_by_its_lead_alone_and_finished_as_one(t: TestStore) {
    // Arrange
    let ids = record_set(
        &t,
        vec![
            change("acct-1", "A", "a.example.test", "192.0.2.1"),
            change("acct-1", "A", "b.example.test", "192.0.2.2"),
            change("acct-1", "AAAA", "b.example.test", "2001:db8::2"),
        ],
    )
    .await;

    // Act
    let claim = t
        .store
        .claim(None, Duration::from_secs(30), no_opening_log())
        .await
        .unwrap();
    let again = t
        .store
        .claim(None, Duration::from_secs(30), no_opening_log())
        .await
        .unwrap();
    let member = t
        .store
        .claim(Some(ids[1]), Duration::from_secs(30), no_opening_log())
        .await
        .unwrap();
    let claim = claim.expect("the lead is claimable");
    let set = claim.request.change_set.unwrap().id;
    let members = t.store.set_members(set).await.unwrap();
    let shares: Vec<SetMember> = members
        .iter()
        .map(|m| SetMember {
            request: m.clone(),
            rrsets: Some(BeforeAfter {
                before: LiveRrset::absent(),
                after: LiveRrset {
                    ttl: 300,
                    records: m.records.clone(),
                },
            }),
        })
        .collect();
    let completed = Outcome::Completed {
        applied_at: Utc::now(),
        verified_at: Some(Utc::now()),
        rrsets: Some(BeforeAfter {
            before: LiveRrset::absent(),
            after: LiveRrset {
                ttl: 300,
                records: vec![a("192.0.2.1")],
            },
        }),
    };
    let written = t
        .store
        .finish_set(&claim, &completed, &[], &shares)
        .await
        .unwrap();

    // Assert: one claim (the lead), members never alone, all COMPLETED with their own after.
    assert_eq!(claim.request.id, ids[0]);
    assert!(
        again.is_none(),
        "a member's name is busy and members are not claimed alone"
    );
    assert!(member.is_none());
    assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), ids[1..]);
    assert!(written);
    for id in &ids {
        let request = t.store.get(*id).await.unwrap().unwrap();
        assert_eq!(request.status, RequestStatus::Completed, "{request:?}");
        assert_eq!(
            request.after.as_ref().unwrap().records,
            request.records,
            "{request:?}"
        );
    }
    let ledger = t
        .store
        .list_records(&RecordFilter {
            domain: Some("b.example.test".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    assert!(
        t.store
            .claim(None, Duration::from_secs(30), no_opening_log())
            .await
            .unwrap()
            .is_none()
    );
}

async fn an_atomic_set_that_admission_refuses_in_part_stores_nothing(t: TestStore) {
    // Arrange: acct-2 owns b.example.test A.
    t.store
        .insert(
            &change("acct-2", "A", "b.example.test", "192.0.2.9"),
            UNFINISHED,
        )
        .await
        .unwrap();
    let (changes, set) = atomic(vec![
        change("acct-1", "A", "a.example.test", "192.0.2.1"),
        change("acct-1", "A", "b.example.test", "192.0.2.2"),
    ]);

    // Act
    let answers = t
        .store
        .insert_atomic(&changes, UNFINISHED, &set)
        .await
        .unwrap();
    let theirs = t
        .store
        .insert(
            &change("acct-3", "A", "a.example.test", "192.0.2.3"),
            UNFINISHED,
        )
        .await
        .unwrap();

    // Assert: refused, nothing stored, a.example.test A not claimed by acct-1.
    assert!(matches!(answers[1], Inserted::NotOwner), "{answers:?}");
    let listed = t
        .store
        .list(&dnsorch::store::RequestFilter {
            account_id: Some("acct-1".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    assert!(matches!(theirs, Inserted::Created(_)), "{theirs:?}");
}

async fn a_lead_waits_for_older_requests_at_its_members_names_and_newer_ones_wait_for_it(
    t: TestStore,
) {
    // Arrange: older at b, the set (a, b), newer at b.
    let older = single(&*t.store, "b.example.test", "192.0.2.10").await;
    let ids = record_set(
        &t,
        vec![
            change("acct-1", "A", "a.example.test", "192.0.2.1"),
            change("acct-1", "AAAA", "b.example.test", "2001:db8::1"),
        ],
    )
    .await;
    let newer = single(&*t.store, "b.example.test", "192.0.2.11").await;
    let lease = Duration::from_secs(30);

    // Act / Assert: the older first; the lead not while it is unfinished; then the lead; the
    // newer only once the set is finished.
    let first = t
        .store
        .claim(None, lease, no_opening_log())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.request.id, older);
    assert!(
        t.store
            .claim(Some(ids[0]), lease, no_opening_log())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        t.store
            .claim(None, lease, no_opening_log())
            .await
            .unwrap()
            .is_none()
    );
    let done = Outcome::Completed {
        applied_at: Utc::now(),
        verified_at: None,
        rrsets: None,
    };
    assert!(t.store.finish(&first, &done, &[]).await.unwrap());
    let lead = t
        .store
        .claim(None, lease, no_opening_log())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.request.id, ids[0]);
    assert!(
        t.store
            .claim(Some(newer), lease, no_opening_log())
            .await
            .unwrap()
            .is_none()
    );
    let members: Vec<SetMember> = t
        .store
        .set_members(lead.request.change_set.unwrap().id)
        .await
        .unwrap()
        .into_iter()
        .map(|request| SetMember {
            request,
            rrsets: None,
        })
        .collect();
    assert!(
        t.store
            .finish_set(&lead, &done, &[], &members)
            .await
            .unwrap()
    );
    let last = t
        .store
        .claim(None, lease, no_opening_log())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.request.id, newer);
}

async fn the_members_fail_with_a_lead_whose_lease_expired_with_no_attempts_left(t: TestStore) {
    // Arrange: the lead claimed with a lease that has run out.
    let ids = record_set(
        &t,
        vec![
            change("acct-1", "A", "a.example.test", "192.0.2.1"),
            change("acct-1", "A", "b.example.test", "192.0.2.2"),
        ],
    )
    .await;
    let claim = t
        .store
        .claim(None, Duration::from_millis(1), no_opening_log())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.request.id, ids[0]);
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Act
    let released = t.store.release_expired_leases(1).await.unwrap();
    let requeued = t.store.requeue_due(Duration::ZERO, 10).await.unwrap();

    // Assert
    assert_eq!(released, ids, "the lead, then its member");
    for id in &ids {
        let request = t.store.get(*id).await.unwrap().unwrap();
        assert_eq!(request.status, RequestStatus::Failed, "{request:?}");
    }
    assert!(requeued.is_empty(), "{requeued:?}");
}

async fn a_set_is_recorded_once_and_listed_newest_first_with_its_requests_counted(t: TestStore) {
    // Arrange: an atomic set of two (recorded with its row), and a second row for the same id.
    let ids = record_set(
        &t,
        vec![
            change("acct-1", "A", "a.example.test", "192.0.2.1"),
            change("acct-1", "A", "b.example.test", "192.0.2.2"),
        ],
    )
    .await;
    let set = t
        .store
        .get(ids[0])
        .await
        .unwrap()
        .unwrap()
        .change_set
        .unwrap()
        .id;
    let (_, mut again) = atomic(Vec::new());
    again.id = set;
    again.item_count = 99;
    let other = ChangeSetId::for_submission("acct-1", Some("k"));
    let (_, mut later) = atomic(Vec::new());
    later.id = other;

    // Act
    let kept = t.sets.record_change_set(&again).await.unwrap();
    t.sets.record_change_set(&later).await.unwrap();
    let listed = t
        .sets
        .list_change_sets(&dnsorch::store::SetFilter {
            account_id: Some("acct-1".into()),
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    let counts = t.sets.set_counts(&[set, other]).await.unwrap();
    let requests = t.sets.change_set_requests(set).await.unwrap();

    // Assert
    assert_eq!(kept.item_count, 2, "the first row stands");
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        [other, set]
    );
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(
        (counts[0].set, counts[0].status, counts[0].count),
        (set, RequestStatus::Pending, 2)
    );
    assert_eq!(requests.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
}
