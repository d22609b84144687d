//! One test binary for the gRPC service through a real tonic client on an ephemeral port: a module per subject
//! (linked once, not once per file).

mod grpc;
mod spends;
mod watch;
