mod queue;
mod store;
