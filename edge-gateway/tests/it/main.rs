//! One test binary for the REST edge in front of the real gRPC service, and the token verifier: a module per subject
//! (linked once, not once per file).

mod routes;
mod token_verifier;
