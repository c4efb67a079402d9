mod admission;
mod atomic_sets;
mod audit;
mod auth;
#[path = "../support/certs.rs"]
mod certs;
mod change_sets;
mod changes;
#[path = "../support/client.rs"]
mod client;
mod controls;
mod dry_run;
mod health;
mod helpers;
mod history;
mod https;
mod idempotency;
mod lifecycle;
mod limits;
mod limits_rate;
mod lists;
mod policies;
mod replace;
mod revert;
mod routing;
#[path = "../support/settings.rs"]
mod settings;
mod targets;
mod tokens;
mod validation;
