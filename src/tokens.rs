//! `dnsorch token create | list | show | rotate | revoke`: managing API tokens in the
//! configured database, as the admin endpoints do over HTTP.
//!
//! A secret is printed alone on standard output (so `TOKEN=$(dnsorch token create …)` works)
//! and only by `create` and `rotate`; everything else (the token's details, messages, logs)
//! goes to standard error. `list` prints one line per token, `show` the token as JSON.
//! Creations, rotations and revocations are recorded in the audit log with the actor `cli`.

use anyhow::Context as _;

use crate::auth;
use crate::cli::TokenCommand;
use crate::config::Settings;
use crate::domain::token::{PolicyBody, TokenBody, parse_duration};
use crate::domain::{Policy, Submitter, TokenId, TokenSpec, ValidationError};
use crate::startup::open_store;
use crate::store::audit::{self, NewAuditEntry};
use crate::store::tokens::LAST_ADMIN;
use crate::store::{ApiToken, TokenChange, TokenFilter, TokenStore};

/// The most tokens `list` prints.
const LIST_LIMIT: u32 = 10_000;

/// Runs a `dnsorch token` command.
///
/// # Errors
/// Bad arguments (each named), the database cannot be opened, or the command is refused
/// (an unknown id, the last admin token).
pub async fn run_command(settings: &Settings, command: TokenCommand) -> anyhow::Result<()> {
    let stores = open_store(settings, false).await?;
    let (tokens, log) = (stores.tokens, stores.audit);
    match command {
        TokenCommand::Create {
            account,
            name,
            policies,
            expires_in,
            allowed_subnets,
            admin,
            metrics,
            forwarder,
        } => {
            let spec = spec_from_flags(
                TokenBody {
                    account: Some(account),
                    name: Some(name),
                    policies: Vec::new(),
                    expires_in_seconds: None,
                    allowed_subnets,
                    admin,
                    metrics,
                    forwarder,
                },
                &policies,
                expires_in.as_deref(),
            )?;
            let (token, secret) = auth::issue(tokens.as_ref(), &spec).await?;
            audit::record(log.as_ref(), NewAuditEntry::token_created(&token, cli())).await;
            eprintln!("created token {}:\n{}", token.id, describe(&token)?);
            println!("{}", secret.expose());
        }
        TokenCommand::List { account } => {
            let filter = TokenFilter {
                account_id: account,
                before: None,
                limit: LIST_LIMIT,
            };
            let all = tokens.list_tokens(&filter).await?;
            println!("id\taccount\tname\tflags\tpolicies\texpires_at\trevoked_at\tlast_used_at");
            for token in &all {
                println!("{}", line(token));
            }
        }
        TokenCommand::Show { id } => println!("{}", describe(&find(tokens.as_ref(), &id).await?)?),
        TokenCommand::Rotate { id } => {
            let id = parse_id(&id)?;
            match auth::rotate(tokens.as_ref(), id).await? {
                (TokenChange::Done(token), secret) => {
                    audit::record(log.as_ref(), NewAuditEntry::token_rotated(&token, cli())).await;
                    eprintln!("rotated token {}; the old secret no longer works", token.id);
                    println!("{}", secret.expose());
                }
                (TokenChange::Revoked(_), _) => {
                    anyhow::bail!("token {id} is revoked; create a new one")
                }
                (TokenChange::NotFound, _) => anyhow::bail!("no token with id {id}"),
                (TokenChange::LastAdmin, _) => anyhow::bail!("a rotation answered LastAdmin"),
            }
        }
        TokenCommand::Revoke { id } => {
            let id = parse_id(&id)?;
            match tokens.revoke_token(id).await? {
                TokenChange::Done(token) | TokenChange::Revoked(token) => {
                    audit::record(log.as_ref(), NewAuditEntry::token_revoked(&token, cli())).await;
                    eprintln!(
                        "revoked token {} ({}); it stops working within TOKEN_CACHE_SECONDS",
                        token.id, token.name
                    );
                }
                TokenChange::NotFound => anyhow::bail!("no token with id {id}"),
                TokenChange::LastAdmin => {
                    anyhow::bail!("{LAST_ADMIN}")
                }
            }
        }
    }
    Ok(())
}

/// The actor of the command line in the audit log.
fn cli() -> Submitter {
    Submitter {
        token_name: Some("cli".into()),
        ..Default::default()
    }
}

/// A token's spec from the command line's flags; problems name the flag.
fn spec_from_flags(
    mut body: TokenBody,
    policies: &[String],
    expires_in: Option<&str>,
) -> anyhow::Result<TokenSpec> {
    let mut errors = ValidationError::default();
    // The flags' texts in the order of `body.policies`, to name them in errors.
    let mut texts = Vec::new();
    for text in policies {
        match PolicyBody::from_flag(text) {
            Some(policy) => {
                body.policies.push(policy);
                texts.push(text);
            }
            None => errors.push(
                "--policy",
                format!("'{text}' is not SUFFIX[:TYPE,TYPE...]=PERM,PERM..."),
            ),
        }
    }
    if let Some(text) = expires_in {
        match parse_duration(text) {
            Ok(duration) => body.expires_in_seconds = Some(duration.as_secs_f64()),
            Err(e) => errors.push("--expires-in", e),
        }
    }
    let spec = TokenSpec::parse(body);
    if let Err(e) = &spec {
        for field in &e.fields {
            // `policies[2].suffix` → `--policy 'text'`, as the user typed it.
            let name = field
                .field
                .strip_prefix("policies[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(i, _)| i.parse::<usize>().ok())
                .and_then(|i| texts.get(i))
                .map_or_else(
                    || field.field.replace("allowed_subnets", "--allowed-subnet"),
                    |text| format!("--policy '{text}'"),
                );
            errors.push(name, field.message.clone());
        }
    }
    match spec {
        Ok(spec) if errors.fields.is_empty() => Ok(spec),
        _ => Err(anyhow::anyhow!("{errors}")),
    }
}

async fn find(tokens: &dyn TokenStore, id: &str) -> anyhow::Result<ApiToken> {
    let id = parse_id(id)?;
    tokens
        .get_token(id)
        .await?
        .with_context(|| format!("no token with id {id}"))
}

fn parse_id(id: &str) -> anyhow::Result<TokenId> {
    id.parse()
        .map_err(|_| anyhow::anyhow!("'{id}' is not a token id (a UUID)"))
}

fn describe(token: &ApiToken) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(token)?)
}

/// One line of `list`, tab-separated.
fn line(token: &ApiToken) -> String {
    let flags: Vec<&str> = [
        (token.admin, "admin"),
        (token.metrics, "metrics"),
        (token.forwarder, "forwarder"),
    ]
    .into_iter()
    .filter_map(|(on, flag)| on.then_some(flag))
    .collect();
    let policies: Vec<String> = token.policies.iter().map(Policy::to_flag).collect();
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
    };
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        token.id,
        token.account,
        token.name,
        if flags.is_empty() {
            "-".to_owned()
        } else {
            flags.join(",")
        },
        if policies.is_empty() {
            "-".to_owned()
        } else {
            policies.join(" ")
        },
        time(token.expires_at),
        time(token.revoked_at),
        time(token.last_used_at),
    )
}
