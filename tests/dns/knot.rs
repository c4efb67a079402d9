//! The rfc2136 battery against Knot DNS (`knotd`, started by `scripts/test.sh` beside BIND
//! with the zones `example.test` and `other.test` taking updates signed with the key
//! `dnsorch-test`, and `readonly.test`, which no key may update): the same tests as against
//! BIND, so dnsorch is shown to speak RFC 2136 to a second implementation, and Knot's own
//! answers where they differ from BIND's (an update its ACL denies is NOTAUTH with TSIG error
//! BADKEY, unsigned, where BIND answers a signed REFUSED).

use super::change_sets::an_atomic_set_deletes_a_names_a_and_creates_its_cname_in_one_update_at;
use super::replace::a_replace_of_three_records_is_exactly_the_new_set_at;
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_type_is_created_in_knot_and_seen_by_a_query() {
    every_record_type_is_created_and_seen_by_a_query_at(&shared_knot()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_in_knot_is_exactly_the_new_set_with_the_new_ttl() {
    a_replace_of_three_records_is_exactly_the_new_set_at(&shared_knot()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_set_at_knot_deletes_a_names_a_and_creates_its_cname_in_one_update() {
    an_atomic_set_deletes_a_names_a_and_creates_its_cname_in_one_update_at(&shared_knot()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_and_a_whole_rrset_are_deleted_from_knot_and_the_ledger() {
    a_record_and_a_whole_rrset_are_deleted_at(&shared_knot()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_conflict_at_knot_fails_with_a_clear_message() {
    a_cname_conflict_fails_with_a_clear_message_at(&shared_knot()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tsig_key_at_knot_fails_with_notauth_and_is_not_retried() {
    a_wrong_tsig_key_fails_with_notauth_and_is_not_retried_at(&shared_knot()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rrset_delete_at_knot_refuses_records_dnsorch_does_not_own() {
    an_rrset_delete_refuses_records_dnsorch_does_not_own_at(&shared_knot()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rrset_ttl_at_knot_follows_the_latest_change() {
    the_rrset_ttl_follows_the_latest_change_at(&shared_knot()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_created_again_with_another_ttl_retime_their_rrset_in_knot() {
    records_created_again_with_another_ttl_retime_their_rrset_at(&shared_knot()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_knots_acl_denies_fails_with_notauth_badkey_and_is_not_retried() {
    // Arrange: the zone readonly.test at Knot, with the key Knot knows but does not allow there.
    let knot = shared_knot();
    let app = spawn_app(|dir, settings| {
        let path = dir.path().join("dnsorch.toml");
        let text = rfc2136_zone("readonly.test", knot.port, &knot.secret_file);
        std::fs::write(&path, text).unwrap();
        settings.dnsorch_config = Some(path);
    })
    .await;
    let domain = format!("{}.readonly.test", unique("acl"));

    // Act, and assert: failed at the first attempt (NOTAUTH, BADKEY), saying the key is not
    // accepted; nothing at Knot.
    let log = refused_for_the_key(&app, knot.port, &domain, "BADKEY").await;
    assert!(
        log.contains("does not accept TSIG key dnsorch-test for zone readonly.test"),
        "{log}"
    );
}
