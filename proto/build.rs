use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto = proto_root.join("payments/v1/payments.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    // protox parses the proto in Rust, so no system protoc is needed.
    let descriptors = protox::compile([&proto], [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("payments_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Small starting buffers for every call (src/codec.rs).
        .codec_path("crate::SmallBuffersCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
