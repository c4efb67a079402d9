mod store;
mod queue;
