//! Validation of `POST /api/v1/dns/create`: what is accepted is stored in
//! normal form; every rejection is a 422 naming each bad field, and nothing is stored.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

use Expect::{Rejected, Stored};

const PRIORITY: &str = "/resource/config/priority";
const TTL: &str = "/resource/config/ttl";
pub(crate) const EXTRA: &str = "/resource/config/extra_config";

/// What a body leads to: a request stored with these values, or a 422 naming these fields.
pub(crate) enum Expect {
    Stored(Value),
    Rejected(&'static [&'static str]),
}

/// `body` with `value` at the JSON pointer `at`, creating objects on the way.
pub(crate) fn with(mut body: Value, at: &str, value: Value) -> Value {
    let mut node = &mut body;
    for key in at.trim_start_matches('/').split('/') {
        if node.is_null() {
            *node = json!({});
        }
        let object = node.as_object_mut().expect("an object on the way");
        node = object.entry(key).or_insert(Value::Null);
    }
    *node = value;
    body
}

/// An owner name and a valid target for each record type.
pub(crate) fn sample(record_type: &str) -> (&'static str, &'static str) {
    match record_type.to_ascii_uppercase().as_str() {
        "AAAA" => ("www.example.test", "2001:db8::1"),
        "CNAME" => ("alias.example.test", "target.example.test"),
        "MX" => ("example.test", "mail.example.test"),
        "TXT" => ("example.test", "v=spf1 -all"),
        "SRV" => ("_sip._tcp.example.test", "10 5060 sip.example.test"),
        "NS" => ("sub.example.test", "ns1.example.test"),
        "PTR" => ("10.2.0.192.in-addr.arpa", "host.example.test"),
        "CAA" => ("example.test", "0 issue \"ca.example.test\""),
        _ => ("www.example.test", "192.0.2.1"),
    }
}

/// A create body for account `acct-1`; MX and SRV records get the priority 10 they need.
fn body(record_type: &str, domain: &str, target: &str) -> Value {
    match record_type.to_ascii_uppercase().as_str() {
        "MX" | "SRV" => with(change(record_type, domain, target), PRIORITY, json!(10)),
        _ => change(record_type, domain, target),
    }
}

/// The sample body of a type, and the same with another owner name or target.
pub(crate) fn valid(record_type: &str) -> Value {
    body(record_type, sample(record_type).0, sample(record_type).1)
}
fn owned_by(record_type: &str, domain: &str) -> Value {
    body(record_type, domain, sample(record_type).1)
}
pub(crate) fn targeting(record_type: &str, target: &str) -> Value {
    body(record_type, sample(record_type).0, target)
}

/// The request we expect stored: TTL 300, priority 10 for MX and SRV, no extras.
pub(crate) fn stored(record_type: &str, domain: &str, target: &str) -> Value {
    let priority = matches!(record_type, "MX" | "SRV").then_some(10);
    let config = json!({"ttl": 300, "priority": priority, "extra_config": {}});
    json!({"account_id": "acct-1", "record_type": record_type, "domain": domain,
           "target": target, "config": config})
}

/// The stored form of `valid(record_type)`.
pub(crate) fn normal(record_type: &str) -> Value {
    stored(record_type, sample(record_type).0, sample(record_type).1)
}

/// A name of exactly `len` octets (without the trailing dot).
fn name_of_length(len: usize) -> String {
    let label = "a".repeat(63);
    format!("{label}.{label}.{label}.{}.test", "d".repeat(len - 197))
}

/// An `extra_config` object with `n` keys.
fn extra_config(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("key{i}"), json!(i))).collect())
}

/// Posts each body in turn. An accepted one must answer 202 with the expected values, and the
/// stored request must hold them too; a rejected one must answer 422 `validation_failed`
/// naming exactly its bad fields, each with a message. Afterwards the list of requests must
/// hold the accepted ones only.
pub(crate) async fn check(app: &TestApp, cases: impl IntoIterator<Item = (Value, Expect)>) {
    let mut accepted = 0;
    for (body, expect) in cases {
        let case: String = body.to_string().chars().take(200).collect();
        let response = app.post_create(&body).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        match expect {
            Stored(expected) => {
                accepted += 1;
                assert_eq!(status, StatusCode::ACCEPTED, "{case}: {answer:#}");
                let request = app.request(answer["request_id"].as_str().unwrap()).await;
                for (key, value) in expected.as_object().unwrap() {
                    assert_eq!(&answer[key], value, "{case}: the answer's {key}");
                    assert_eq!(&request[key], value, "{case}: the stored {key}");
                }
            }
            Rejected(fields) => assert_rejected(&case, status, &answer, fields),
        }
    }
    let page: Value = app.get("/api/v1/dns/requests").await.json().await.unwrap();
    let items = page["items"].as_array().expect("an items list");
    assert_eq!(items.len(), accepted, "only the accepted: {page:#}");
}

pub(crate) fn assert_rejected(case: &str, status: StatusCode, answer: &Value, fields: &[&str]) {
    assert_eq!(status.as_u16(), 422, "{case}: {answer:#}");
    assert_eq!(answer["error"], "validation_failed", "{case}: {answer:#}");
    let mut named = Vec::new();
    for entry in answer["fields"].as_array().expect("a fields list") {
        let explained = entry["message"].as_str().is_some_and(|m| !m.is_empty());
        assert!(explained, "{case}: {entry} has no message");
        named.push(entry["field"].as_str().expect("a field name"));
    }
    let mut expected = fields.to_vec();
    named.sort_unstable();
    expected.sort_unstable();
    assert_eq!(named, expected, "{case}: {answer:#}");
}

#[tokio::test]
async fn names_are_stored_lower_case_without_the_trailing_dot_and_as_a_labels() {
    // Arrange
    let app = spawn_app().await;
    let (label_63, name_253) = (format!("{}.test", "a".repeat(63)), name_of_length(253));
    let name_253_dot = format!("{name_253}.");
    #[rustfmt::skip]
    let cases = [
        ("A",     "WWW.Example.Test.",               "www.example.test"),
        ("AAAA",  "www.example.test",                "www.example.test"),
        ("A",     "bücher.example.test",             "xn--bcher-kva.example.test"),
        ("A",     "BÜCHER.example.test.",            "xn--bcher-kva.example.test"),
        ("A",     "xn--bcher-kva.example.test",      "xn--bcher-kva.example.test"),
        ("A",     "*.example.test",                  "*.example.test"),
        ("A",     &label_63,                         &label_63),
        ("A",     &name_253_dot,                     &name_253),
        ("TXT",   "_DMARC.example.test",             "_dmarc.example.test"),
        ("CNAME", "_acme-challenge.example.test",    "_acme-challenge.example.test"),
        ("SRV",   "_sip._TCP.example.test.",         "_sip._tcp.example.test"),
        ("SRV",   "_xmpp-server._tcp.a.example.test", "_xmpp-server._tcp.a.example.test"),
    ];
    let cases = cases
        .map(|(rt, given, name)| (owned_by(rt, given), Stored(stored(rt, name, sample(rt).1))));
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn malformed_names_are_rejected_naming_resource_domain() {
    // Arrange
    let app = spawn_app().await;
    let (label_64, name_254) = (format!("{}.test", "a".repeat(64)), name_of_length(254));
    #[rustfmt::skip]
    let cases = [
        ("A", ""), ("A", "."), ("A", "localhost"), ("A", "www..example.test"),
        ("A", "-www.example.test"), ("AAAA", "www-.example.test"),
        ("A", "my host.example.test"), ("A", "www!.example.test"),
        ("A", &label_64), ("A", &name_254),
        ("A", "_dmarc.example.test"), ("AAAA", "_sip._tcp.example.test"), ("MX", "_mx.example.test"),
        ("A", "www.*.example.test"), ("A", "w*.example.test"), ("A", "*.*.example.test"),
        ("SRV", "sip.example.test"), ("SRV", "_sip.example.test"), ("SRV", "sip._tcp.example.test"),
    ];
    let cases = cases.map(|(rt, domain)| (owned_by(rt, domain), Rejected(&["resource.domain"])));
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn each_record_type_stores_its_target_in_normal_form() {
    // Arrange
    let app = spawn_app().await;
    let (txt_300, txt_4000_octets) = ("a".repeat(300), "é".repeat(2000));
    #[rustfmt::skip]
    let cases = [
        ("A",     "192.0.2.10",                   "192.0.2.10"),
        ("AAAA",  "2001:DB8:0:0::0001",           "2001:db8::1"),
        ("CNAME", "Target.Example.Test.",         "target.example.test"),
        ("NS",    "NS1.example.test.",            "ns1.example.test"),
        ("PTR",   "Host.example.test",            "host.example.test"),
        ("MX",    "Mail.Example.Test.",           "mail.example.test"),
        ("SRV",   "10  5060 SIP.example.test.",   "10 5060 sip.example.test"),
        ("SRV",   "0 65535 sip.example.test",     "0 65535 sip.example.test"),
        ("TXT",   "v=spf1 ip4:192.0.2.0/24 -all", "v=spf1 ip4:192.0.2.0/24 -all"),
        ("TXT",   &txt_300,                       &txt_300),
        ("TXT",   &txt_4000_octets,               &txt_4000_octets),
        ("CAA",   "0 issue \"ca.example.test\"",  "0 issue \"ca.example.test\""),
        ("CAA",   "0 issuewild \";\"",            "0 issuewild \";\""),
        ("CAA",   "0 iodef \"mailto:security@example.test\"", "0 iodef \"mailto:security@example.test\""),
    ];
    let cases = cases.map(|(rt, given, target)| {
        (
            targeting(rt, given),
            Stored(stored(rt, sample(rt).0, target)),
        )
    });
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn a_target_that_does_not_fit_its_record_type_is_rejected_naming_resource_target() {
    // Arrange
    let app = spawn_app().await;
    let (txt_4001, txt_4002_octets) = ("a".repeat(4001), "é".repeat(2001));
    #[rustfmt::skip]
    let cases = [
        ("A", ""), ("A", "2001:db8::1"), ("A", "192.0.2.256"), ("A", "host.example.test"),
        ("AAAA", "192.0.2.1"), ("AAAA", "2001:db8::g"),
        ("CNAME", "not a host"), ("CNAME", "localhost"),
        ("NS", "ns1..example.test"), ("PTR", "host name.example.test"),
        ("MX", "mail_1.example.test"), ("MX", "192.0.2.1"),
        ("SRV", "10 sip.example.test"), ("SRV", "65536 5060 sip.example.test"),
        ("SRV", "10 65536 sip.example.test"), ("SRV", "10 5060 sip..example.test"),
        ("TXT", &txt_4001), ("TXT", &txt_4002_octets),
        ("CAA", "0 policy \"ca.example.test\""), ("CAA", "0 issue ca.example.test"),
        ("CAA", "0 issue"), ("CAA", "x issue \"ca.example.test\""),
    ];
    let cases = cases.map(|(rt, target)| (targeting(rt, target), Rejected(&["resource.target"])));
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn mx_and_srv_need_a_priority_from_0_to_65535_and_other_types_must_not_have_one() {
    // Arrange
    let app = spawn_app().await;
    let priority = |rt: &str, value: Value| with(valid(rt), PRIORITY, value);
    let rejected = || Rejected(&["resource.config.priority"]);
    let mut cases = Vec::new();
    for (rt, value) in [("MX", 0), ("MX", 65535), ("SRV", 0), ("SRV", 65535)] {
        let expected = with(normal(rt), "/config/priority", json!(value));
        cases.push((priority(rt, json!(value)), Stored(expected)));
    }
    cases.push((priority("A", Value::Null), Stored(normal("A"))));
    for rt in ["MX", "SRV"] {
        let (domain, target) = sample(rt);
        cases.push((change(rt, domain, target), rejected()));
        cases.push((priority(rt, Value::Null), rejected()));
        cases.push((priority(rt, json!(-1)), rejected()));
        cases.push((priority(rt, json!(65536)), rejected()));
    }
    for rt in ["A", "AAAA", "CNAME", "NS", "PTR", "TXT", "CAA"] {
        cases.push((priority(rt, json!(0)), rejected()));
    }
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn record_types_are_case_insensitive_and_unknown_ones_list_the_supported_types() {
    // Arrange
    let app = spawn_app().await;
    let supported = ["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS", "PTR", "CAA"];
    let given = ["a", "aaaa", "Cname", "mx", "txt", "sRv", "ns", "Ptr", "caa"];
    let accepted = given.map(|rt| (valid(rt), Stored(normal(&rt.to_ascii_uppercase()))));
    let unknown = ["SPF", "AAAAA", ""].map(|rt| (valid(rt), Rejected(&["resource.record_type"])));
    // Act
    check(&app, accepted.into_iter().chain(unknown)).await;
    let answer: Value = app.post_create(&valid("SPF")).await.json().await.unwrap();
    // Assert
    let message = answer["fields"][0]["message"].as_str().unwrap();
    let words = message.split(|c: char| !c.is_ascii_alphanumeric());
    let listed = |name: &&str| words.clone().any(|word| word == *name);
    let all_listed = supported.iter().all(listed);
    assert!(all_listed, "{supported:?} are not all in: {message}");
}

#[tokio::test]
async fn ttl_defaults_to_300_and_must_be_from_0_to_2147483647() {
    // Arrange
    let app = spawn_app().await;
    let ttl = |value: i64| with(valid("A"), TTL, json!(value));
    let mut cases = vec![(valid("A"), Stored(normal("A")))];
    for value in [0, 3600, 2_147_483_647] {
        let expected = with(normal("A"), "/config/ttl", json!(value));
        cases.push((ttl(value), Stored(expected)));
    }
    for value in [-1, 2_147_483_648, 4_294_967_296] {
        cases.push((ttl(value), Rejected(&["resource.config.ttl"])));
    }
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn account_id_when_given_must_be_non_empty_and_at_most_128_characters() {
    // Arrange: the app's admin token may act for any account; without one named, the
    // request is the token's own account's (`admin`).
    let app = spawn_app().await;
    // Each account writes an RRset of its own: an RRset has one owner.
    let name = |id: &str| json!(format!("len{}.example.test", id.len()));
    let account = |id: &str| {
        let body = with(valid("A"), "/context/account_id", json!(id));
        with(body, "/resource/domain", name(id))
    };
    let stored_for = |id: &str| {
        let expected = with(normal("A"), "/account_id", json!(id));
        Stored(with(expected, "/domain", name(id)))
    };
    let (x_128, e_128, x_129) = ("x".repeat(128), "é".repeat(128), "x".repeat(129));
    let rejected = || Rejected(&["context.account_id"]);
    let admin = || Stored(with(normal("A"), "/account_id", json!("admin")));
    let cases = [
        (account("a"), stored_for("a")),
        (account(&x_128), stored_for(&x_128)),
        (account(&e_128), stored_for(&e_128)),
        (account(""), rejected()),
        (account(&x_129), rejected()),
        (with(valid("A"), "/context", json!({})), admin()),
        (json!({"resource": valid("A")["resource"]}), admin()),
    ];
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn extra_config_holds_at_most_32_keys_and_is_kept_untouched() {
    // Arrange
    let app = spawn_app().await;
    let with_keys = |n: usize| with(valid("A"), EXTRA, extra_config(n));
    let expected = with(normal("A"), "/config/extra_config", extra_config(32));
    let cases = [
        (with_keys(32), Stored(expected)),
        (with_keys(33), Rejected(&["resource.config.extra_config"])),
    ];
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn a_wrong_json_type_or_an_unknown_field_is_rejected_naming_its_path() {
    // Arrange
    let app = spawn_app().await;
    #[rustfmt::skip]
    let cases = [
        (TTL, json!("300"), &["resource.config.ttl"]),
        (TTL, json!(1.5), &["resource.config.ttl"]),
        (PRIORITY, json!("10"), &["resource.config.priority"]),
        ("/resource/domain", json!(42), &["resource.domain"]),
        ("/resource/record_type", json!(["A"]), &["resource.record_type"]),
        ("/context/account_id", json!(7), &["context.account_id"]),
        (EXTRA, json!(["a"]), &["resource.config.extra_config"]),
        ("/colour", json!("blue"), &["colour"]),
        ("/resource/colour", json!("blue"), &["resource.colour"]),
        ("/context/team", json!("blue"), &["context.team"]),
        ("/resource/config/weight", json!(1), &["resource.config.weight"]),
    ];
    let cases = cases.map(|(at, value, fields)| (with(valid("A"), at, value), Rejected(fields)));
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn a_body_with_several_bad_fields_lists_every_one_of_them() {
    // Arrange
    let app = spawn_app().await;
    let six_bad = json!({"context": {"account_id": ""}, "resource": {"record_type": "MX",
        "domain": "a..example.test", "target": "not a host",
        "config": {"ttl": -5, "extra_config": extra_config(33)}}});
    let unknown_type = body("SPF", "-bad.example.test", "x");
    #[rustfmt::skip]
    let cases = [
        (six_bad, Rejected(&["context.account_id", "resource.domain", "resource.target",
            "resource.config.priority", "resource.config.ttl", "resource.config.extra_config"])),
        (unknown_type, Rejected(&["resource.record_type", "resource.domain"])),
        (json!({}), Rejected(&["resource.record_type", "resource.domain", "resource.target"])),
    ];
    // Act + Assert
    check(&app, cases).await;
}
