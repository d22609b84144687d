//! `payments.v1`, generated from `payments/v1/payments.proto` by build.rs
//! (protox, so no system `protoc` is needed). Server and client stubs both.

tonic::include_proto!("payments.v1");

/// The encoded file descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/payments_descriptor.bin"));

/// The fully qualified service name, as health checks ask for it.
pub const SERVICE_NAME: &str = "payments.v1.PaymentsService";

pub mod codec;
pub mod error_reason;

pub use codec::SmallBuffersCodec;
