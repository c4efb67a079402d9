//! One record in zone-file form, as `resource.targets` carries it: the RDATA a zone file
//! would hold after the type, priority included (`"10 mail.example.test"` for MX,
//! `"10 5 5060 sip.example.test"` for SRV).
//!
//! TXT is the exception the original body set: an element is the literal text, unless it
//! begins and ends with `"`, when it is zone-file presentation, one or more quoted strings
//! (`"v=spf1 -all"`, `"part one" "part two"`), whose contents are joined. Inside quotes `\"`
//! and `\\` stand for `"` and `\`; any other escape (`\009`) is kept as written, as in a
//! literal text. [`element`] gives back the form [`parse`] reads, so a record set read from
//! an answer can be sent again unchanged.

use serde::{Deserialize, Serialize};

use super::record::{DataError, LiveRrset, RecordData, RecordType};

/// An RRset on the wire and in the database: its TTL and its records in zone-file form. An
/// RRset that is absent has no records (and TTL 0, [`LiveRrset::absent`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RrsetView {
    pub ttl: u32,
    #[schema(example = json!(["192.0.2.10"]))]
    pub records: Vec<String>,
}

impl RrsetView {
    /// The wire form of `rrset`.
    pub fn of(rrset: &LiveRrset) -> Self {
        Self {
            ttl: rrset.ttl,
            records: rrset.records.iter().map(element).collect(),
        }
    }

    /// The RRset these elements give for `record_type`.
    ///
    /// # Errors
    /// An element is not a record of that type.
    pub fn parse(&self, record_type: RecordType) -> Result<LiveRrset, String> {
        let records = self
            .records
            .iter()
            .map(|e| parse(record_type, e))
            .collect::<Result<_, _>>()?;
        Ok(LiveRrset {
            ttl: self.ttl,
            records,
        })
    }
}

/// Parses one element for a record of `record_type`.
///
/// # Errors
/// Why the element is not a record of that type (without the field's name).
pub fn parse(record_type: RecordType, element: &str) -> Result<RecordData, String> {
    let element = element.trim();
    match record_type {
        RecordType::Mx | RecordType::Srv => {
            let shape = match record_type {
                RecordType::Mx => "\"<preference> <host>\"",
                _ => "\"<priority> <weight> <port> <host>\"",
            };
            let Some((priority, rest)) = element.split_once(char::is_whitespace) else {
                return Err(format!("'{element}' is not {shape}"));
            };
            let priority: i64 = priority
                .parse()
                .map_err(|_| format!("'{priority}' in '{element}' is not a number in 0-65535"))?;
            RecordData::parse(record_type, rest.trim(), Some(priority)).map_err(describe)
        }
        RecordType::Txt if is_quoted(element) => {
            RecordData::parse(record_type, &unquote(element)?, None).map_err(describe)
        }
        RecordType::A
        | RecordType::Aaaa
        | RecordType::Cname
        | RecordType::Txt
        | RecordType::Ns
        | RecordType::Ptr
        | RecordType::Caa => RecordData::parse(record_type, element, None).map_err(describe),
    }
}

/// The element form of `record`: what [`parse`] reads back as the same record.
pub fn element(record: &RecordData) -> String {
    match record {
        RecordData::Mx { preference, .. } => format!("{preference} {}", record.target()),
        RecordData::Srv { priority, .. } => format!("{priority} {}", record.target()),
        // A text that would read as presentation is written as presentation.
        RecordData::Txt(text) if is_quoted(text.trim()) || text.trim() != text => {
            let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{escaped}\"")
        }
        RecordData::A(_)
        | RecordData::Aaaa(_)
        | RecordData::Cname(_)
        | RecordData::Txt(_)
        | RecordData::Ns(_)
        | RecordData::Ptr(_)
        | RecordData::Caa { .. } => record.target(),
    }
}

fn is_quoted(text: &str) -> bool {
    text.len() >= 2 && text.starts_with('"') && text.ends_with('"')
}

/// The joined contents of one or more quoted strings separated by white space.
fn unquote(element: &str) -> Result<String, String> {
    let mut text = String::new();
    let mut chars = element.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => return Ok(text),
            Some('"') => {}
            Some(_) => {
                return Err(format!(
                    "'{element}' is not one or more quoted strings (text outside quotes)"
                ));
            }
        }
        loop {
            match chars.next() {
                None => return Err(format!("'{element}' has a quote that is not closed")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some(c @ ('"' | '\\')) => text.push(c),
                    Some(c) => {
                        text.push('\\');
                        text.push(c);
                    }
                    None => return Err(format!("'{element}' ends inside an escape")),
                },
                Some(c) => text.push(c),
            }
        }
        if chars.peek().is_some_and(|c| !c.is_whitespace()) {
            return Err(format!(
                "'{element}' needs white space between its quoted strings"
            ));
        }
    }
}

/// The messages of a parse, joined (an element has no separate priority field).
fn describe(errors: Vec<DataError>) -> String {
    errors
        .into_iter()
        .map(|e| match e {
            DataError::Target(message) | DataError::Priority(message) => message,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(record_type: RecordType, element_text: &str) -> String {
        element(&parse(record_type, element_text).unwrap())
    }

    #[test]
    fn mx_and_srv_carry_their_priority_first() {
        let mx = parse(RecordType::Mx, "10 Mail.Example.Test.").unwrap();
        assert_eq!(
            (mx.priority(), mx.target()),
            (Some(10), "mail.example.test".into())
        );
        assert_eq!(
            round_trip(RecordType::Mx, "10  mail.example.test"),
            "10 mail.example.test"
        );
        let srv = parse(RecordType::Srv, "10 5 5060 sip.example.test").unwrap();
        assert_eq!(srv.priority(), Some(10));
        assert_eq!(srv.target(), "5 5060 sip.example.test");
        assert_eq!(
            round_trip(RecordType::Srv, "10 5 5060 sip.example.test"),
            "10 5 5060 sip.example.test"
        );
    }

    #[test]
    fn a_missing_or_bad_priority_is_named() {
        assert!(parse(RecordType::Mx, "mail.example.test").is_err());
        let e = parse(RecordType::Mx, "70000 mail.example.test").unwrap_err();
        assert!(e.contains("70000"), "{e}");
        let e = parse(RecordType::Srv, "x 5 5060 sip.example.test").unwrap_err();
        assert!(e.contains("'x'"), "{e}");
        assert!(parse(RecordType::Srv, "10 5060 sip.example.test").is_err());
    }

    #[test]
    fn txt_is_literal_unless_quoted_and_quoted_strings_are_joined() {
        assert_eq!(
            parse(RecordType::Txt, "v=spf1 -all").unwrap(),
            RecordData::Txt("v=spf1 -all".into())
        );
        assert_eq!(
            parse(RecordType::Txt, r#""heritage=external-dns,owner=x""#).unwrap(),
            RecordData::Txt("heritage=external-dns,owner=x".into())
        );
        assert_eq!(
            parse(
                RecordType::Txt,
                r#""part one " "part two" "say \"hi\" \\ \009""#
            )
            .unwrap(),
            RecordData::Txt(r#"part one part twosay "hi" \ \009"#.into())
        );
        for bad in [r#""a" ""#, r#""a""b""#, r#""a" b "c""#] {
            assert!(parse(RecordType::Txt, bad).is_err(), "{bad}");
        }
        // Not both ends quoted: literal text.
        assert_eq!(
            parse(RecordType::Txt, r#""open"#).unwrap(),
            RecordData::Txt("\"open".into())
        );
    }

    #[test]
    fn every_txt_reads_back_as_itself() {
        for text in [
            "plain",
            "\"quoted\"",
            " padded ",
            "back\\slash",
            "say \"hi\"",
        ] {
            let record = RecordData::Txt(text.into());
            assert_eq!(
                parse(RecordType::Txt, &element(&record)).unwrap(),
                record,
                "{text}"
            );
        }
    }

    #[test]
    fn other_types_are_their_target() {
        assert_eq!(round_trip(RecordType::A, "192.0.2.1"), "192.0.2.1");
        assert_eq!(
            round_trip(RecordType::Caa, "0 issue \"ca.example\""),
            "0 issue \"ca.example\""
        );
        assert!(parse(RecordType::A, "10 192.0.2.1").is_err());
    }
}
