mod audit;
mod migration;
mod ownership;
mod queue;
mod store;
#[path = "../support/postgres.rs"]
mod support;
mod tokens;
