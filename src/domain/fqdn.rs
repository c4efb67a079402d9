//! Domain names as dnsorch accepts them: fully qualified, lower-case, A-labels.
//!
//! `Fqdn::parse` is the one place a name from a client is checked; everything after it trusts
//! the type. Which labels are allowed depends on where the name stands (an owner name of a TXT
//! record may hold `_dmarc`, a mail exchange may not), so callers pass `NameRules`.

use std::fmt;

/// The longest name we accept, in its text form without the trailing dot.
const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035 section 2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// A fully qualified domain name: lower-case, A-labels, stored without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fqdn(String);

/// What a name may contain where it is used.
#[derive(Debug, Clone, Copy, Default)]
pub struct NameRules {
    /// Labels may start with or contain `_` (`_dmarc`, `_sip._tcp`, DKIM selectors).
    pub underscore: bool,
    /// The leftmost label may be `*` (RFC 4592).
    pub wildcard: bool,
}

impl NameRules {
    /// A host name: letters, digits and hyphens only, no wildcard.
    pub const HOST: Self = Self {
        underscore: false,
        wildcard: false,
    };
}

impl Fqdn {
    /// Parses a name as a client wrote it.
    ///
    /// # Errors
    /// A message saying what is wrong, suitable for a validation error.
    pub fn parse(input: &str, rules: NameRules) -> Result<Self, String> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        let labels: Vec<&str> = trimmed.split('.').collect();
        if labels.len() < 2 {
            return Err(
                "must be fully qualified (at least two labels, e.g. www.example.com)".into(),
            );
        }
        let mut ascii = Vec::with_capacity(labels.len());
        for (index, label) in labels.iter().enumerate() {
            let label = to_a_label(label)?;
            check_label(&label, index == 0, rules)?;
            ascii.push(label);
        }
        let last = ascii.last().map(String::as_str).unwrap_or_default();
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("top-level label '{last}' must not be all-numeric"));
        }
        let name = ascii.join(".");
        if name.len() > MAX_NAME_LEN {
            return Err(format!(
                "is {} octets long; a name may be at most {MAX_NAME_LEN}",
                name.len()
            ));
        }
        Ok(Self(name))
    }

    /// The name without the trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The labels, leftmost first.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Converts one label to its A-label form (lower-case ASCII), so `bücher` becomes
/// `xn--bcher-kva`. We convert label by label, because UTS 46 on the whole name would refuse
/// the underscores that service labels need.
fn to_a_label(label: &str) -> Result<String, String> {
    if label.is_ascii() {
        let lower = label.to_ascii_lowercase();
        if let Some(encoded) = lower.strip_prefix("xn--")
            && idna::punycode::decode_to_string(encoded).is_none_or(|s| s.is_empty())
        {
            return Err(format!("label '{label}' is not valid punycode"));
        }
        return Ok(lower);
    }
    match idna::domain_to_ascii(label) {
        Ok(converted) if !converted.is_empty() && !converted.contains('.') => Ok(converted),
        _ => Err(format!(
            "label '{label}' is not a valid internationalised label"
        )),
    }
}

fn check_label(label: &str, leftmost: bool, rules: NameRules) -> Result<(), String> {
    if label.is_empty() {
        return Err("must not contain an empty label (two dots in a row)".into());
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "label '{label}' is {} octets long; a label may be at most {MAX_LABEL_LEN}",
            label.len()
        ));
    }
    if label == "*" {
        return match (leftmost, rules.wildcard) {
            (true, true) => Ok(()),
            (false, _) => Err("wildcard '*' is only allowed as the whole leftmost label".into()),
            (true, false) => Err("wildcard '*' is not allowed here".into()),
        };
    }
    if let Some(bad) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || (*c == '_' && rules.underscore)))
    {
        return Err(match bad {
            '*' => "wildcard '*' is only allowed as the whole leftmost label".into(),
            '_' => {
                format!("label '{label}' contains '_', which this record type does not allow here")
            }
            _ => format!(
                "label '{label}' contains '{bad}'; only letters, digits and hyphens are allowed"
            ),
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "label '{label}' must not start or end with a hyphen"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: NameRules = NameRules {
        underscore: true,
        wildcard: true,
    };

    #[test]
    fn a_name_is_stored_lower_case_without_the_trailing_dot() {
        let name = Fqdn::parse("WWW.Example.Test.", NameRules::HOST).unwrap();
        assert_eq!(name.as_str(), "www.example.test");
    }

    #[test]
    fn an_idn_label_becomes_its_a_label() {
        let name = Fqdn::parse("bücher.example.test", NameRules::HOST).unwrap();
        assert_eq!(name.as_str(), "xn--bcher-kva.example.test");
    }

    #[test]
    fn underscores_need_rules_that_allow_them() {
        assert!(Fqdn::parse("_dmarc.example.test", NameRules::HOST).is_err());
        assert!(Fqdn::parse("_sip._tcp.example.test", SERVICE).is_ok());
    }

    #[test]
    fn a_wildcard_is_only_the_whole_leftmost_label() {
        assert!(Fqdn::parse("*.example.test", SERVICE).is_ok());
        assert!(Fqdn::parse("a.*.example.test", SERVICE).is_err());
        assert!(Fqdn::parse("a*.example.test", SERVICE).is_err());
        assert!(Fqdn::parse("*.example.test", NameRules::HOST).is_err());
    }

    #[test]
    fn lengths_and_shapes_are_bounded() {
        let long_label = "a".repeat(64);
        assert!(Fqdn::parse(&format!("{long_label}.example.test"), NameRules::HOST).is_err());
        let long_name = format!("{}.test", vec!["a".repeat(63); 4].join("."));
        assert!(Fqdn::parse(&long_name, NameRules::HOST).is_err());
        for bad in [
            "",
            ".",
            "localhost",
            "a..b.test",
            "-a.example.test",
            "a.example.123",
            "xn--zz-.test",
        ] {
            assert!(
                Fqdn::parse(bad, NameRules::HOST).is_err(),
                "{bad} was accepted"
            );
        }
    }
}
