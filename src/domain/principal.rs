//! Who acts: the verified principal behind a request, and how it is recorded with the request.
//!
//! A principal comes from an API token (see `auth`), or is `kafka-trusted` for messages on a
//! topic the operator declared trusted for some accounts. The account of a request is decided
//! by its principal, never by the body alone.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::token::{Permission, Policy, TokenId};

/// The principal name of trusted Kafka messages, which carry no token.
pub const KAFKA_TRUSTED: &str = "kafka-trusted";

/// A verified identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token; `None` for trusted Kafka messages.
    pub token_id: Option<TokenId>,
    /// The token's name (or `kafka-trusted`).
    pub name: String,
    /// The account it acts for by default.
    pub account_id: String,
    /// May manage tokens, read everything, and act for any account.
    pub admin: bool,
    /// May read `/metrics`.
    pub metrics: bool,
    /// May act for the trusted Kafka accounts, recorded as `kafka` (forward mode).
    pub forwarder: bool,
    /// What it may do by name and type (see `domain::policy`); admins are not limited by it.
    pub policies: Arc<[Policy]>,
}

impl Principal {
    /// The principal of a trusted Kafka message for `account_id`: a broad grant over every
    /// name (the root suffix), so it may change anything but sensitive records (NS, DS, CAA,
    /// zone apexes, `_acme-challenge`), which need a token whose policy lists the type.
    pub fn kafka_trusted(account_id: &str) -> Self {
        Self {
            token_id: None,
            name: KAFKA_TRUSTED.to_owned(),
            account_id: account_id.to_owned(),
            admin: false,
            metrics: false,
            forwarder: false,
            policies: Arc::from([Policy {
                suffix: String::new(),
                types: Vec::new(),
                permissions: vec![Permission::Read, Permission::Create, Permission::Delete],
            }]),
        }
    }

    /// Whether it may read what belongs to `account_id`.
    pub fn may_read(&self, account_id: &str) -> bool {
        self.admin || self.account_id == account_id
    }
}

/// The way a request came in; recorded as its `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Kafka,
    /// The external-dns webhook provider (`dnsorch webhook`).
    Webhook,
}

impl Source {
    /// The text stored in `dns_requests.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Kafka => "kafka",
            Self::Webhook => "webhook",
        }
    }
}

/// A principal at work: who, through what, from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub source: Source,
    /// The client's address (HTTP only).
    pub client_addr: Option<IpAddr>,
}

/// Who submitted a request, as recorded with it and shown in its answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Submitter {
    /// The token; absent for trusted Kafka messages and for requests older than tokens.
    pub token_id: Option<TokenId>,
    /// The token's name, or `kafka-trusted`.
    pub token_name: Option<String>,
    /// The token's own account (an admin token may act for another).
    pub account_id: Option<String>,
    /// The client's address, as the socket (or a trusted proxy) gave it.
    pub client_addr: Option<String>,
}

impl Submitter {
    /// How an actor is recorded.
    pub fn of(actor: &Actor) -> Self {
        Self {
            token_id: actor.principal.token_id,
            token_name: Some(actor.principal.name.clone()),
            account_id: Some(actor.principal.account_id.clone()),
            client_addr: actor.client_addr.map(|a| a.to_canonical().to_string()),
        }
    }

    /// `token ci (0193…) of account acct-42 from 10.0.0.7`, for the request's log.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(96);
        let _ = match (&self.token_name, self.token_id) {
            (Some(name), Some(id)) => write!(text, "token {name} ({id})"),
            (Some(name), None) => write!(text, "{name}"),
            (None, _) => write!(text, "an unknown principal"),
        };
        if let Some(account) = &self.account_id {
            let _ = write!(text, " of account {account}");
        }
        if let Some(addr) = &self.client_addr {
            let _ = write!(text, " from {addr}");
        }
        text
    }
}
