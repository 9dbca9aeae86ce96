//! The forwarder: destinations and their sealed credentials, the durable dispatch queue and its
//! workers, the Google Ads / Meta / webhook clients, and the retry policy.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod model;
