//! Development and test support for the whole stack: helpers that run
//! payments-grpc and edge-gateway together beside the Stripe sandbox.

pub mod cluster;
pub mod stack;
pub mod tools;

pub use payments_devtools::{process, web};
