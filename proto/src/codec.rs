//! The codec of every generated client and server: tonic's prost codec with
//! small starting buffers.
//!
//! tonic reserves a call's encode and decode buffers up front (8 KiB each by
//! default) and a stream keeps them for its whole life. This API's messages
//! are a few dozen bytes to a few KiB (a page of history); a buffer grows
//! when a message needs it. With 8 KiB, an open `WatchBalance` cost
//! payments-grpc about 16 KiB and the edge a third of a `GET
//! /balance/stream`.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes a call's buffers start with; the second figure is how many bytes a
/// stream encodes before it yields (tonic's default is 32 KiB).
pub fn buffers() -> BufferSettings {
    BufferSettings::new(256, 4096)
}

/// Protobuf, with [`buffers`].
#[derive(Debug, Clone, Copy)]
pub struct SmallBuffersCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBuffersCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SmallBuffersCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(buffers())
    }
}
