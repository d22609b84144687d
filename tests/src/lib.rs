//! Development and test support for the whole stack: the Stripe sandbox and
//! helpers that run payments-grpc and edge-gateway together.

pub mod cluster;
pub mod process;
pub mod sandbox;
pub mod stack;
