//! Every non-OK status carries an ErrorInfo reason, also those that tonic
//! makes itself before or after our code runs: an unknown method
//! (`UNIMPLEMENTED`), a request over the size limit (`MESSAGE_TOO_LARGE`), a
//! request that is not protobuf (`MALFORMED_MESSAGE`). This layer gives such
//! a status the reason of its code, in the headers of a trailers-only answer
//! or in the trailers of a stream, and keeps the status's code and message.
//! It also enforces the call time limit itself (`DEADLINE_EXCEEDED`), which
//! tonic's own limit would answer with no reason. A deadline the client
//! sets (`grpc-timeout`) is still tonic's; the client's own clock ends such
//! a call at the same moment.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap};
use tonic::codegen::{BoxFuture, Service};
use tonic::{Code, Status};

use crate::proto::error_reason;

/// The tower layer, for `Server::layer`.
#[derive(Clone, Copy, Debug)]
pub struct GiveReasonsLayer {
    pub call_timeout: Duration,
}

impl<S> tower_layer::Layer<S> for GiveReasonsLayer {
    type Service = GiveReasons<S>;

    fn layer(&self, inner: S) -> GiveReasons<S> {
        GiveReasons {
            inner,
            call_timeout: self.call_timeout,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GiveReasons<S> {
    inner: S,
    call_timeout: Duration,
}

impl<S> Service<http::Request<Body>> for GiveReasons<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let answer = self.inner.call(request);
        let call_timeout = self.call_timeout;
        Box::pin(async move {
            let Ok(response) = tokio::time::timeout(call_timeout, answer).await else {
                let status = error_reason::status(
                    Code::DeadlineExceeded,
                    format!("no answer within {} s", call_timeout.as_secs()),
                    error_reason::DEADLINE_EXCEEDED,
                    Default::default(),
                );
                return Ok(status.into_http());
            };
            let mut response = response?;
            give_reason(response.headers_mut());
            Ok(response.map(|body| {
                Body::new(body.map_frame(|frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        give_reason(&mut trailers);
                        http_body::Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                }))
            }))
        })
    }
}

/// A non-OK status in `headers` without an ErrorInfo gets its code's reason.
fn give_reason(headers: &mut HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if status.code() == Code::Ok || error_reason::of(&status).is_some() {
        return;
    }
    let reasoned = error_reason::status(
        status.code(),
        status.message(),
        reason_of(&status),
        Default::default(),
    );
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if reasoned.add_header(headers).is_err() {
        // The reasoned status cannot be written: keep tonic's own.
        let _ = status.add_header(headers);
    }
}

/// The reason of a status tonic made, by its code.
pub fn reason_of(status: &Status) -> &'static str {
    match status.code() {
        Code::Unimplemented => error_reason::UNIMPLEMENTED,
        Code::DeadlineExceeded | Code::Cancelled => error_reason::DEADLINE_EXCEEDED,
        // tonic's decoder refuses a message over the limit with OUT_OF_RANGE.
        Code::OutOfRange | Code::ResourceExhausted => error_reason::MESSAGE_TOO_LARGE,
        Code::Internal if status.message().starts_with("failed to decode") => {
            error_reason::MALFORMED_MESSAGE
        }
        Code::InvalidArgument => error_reason::INVALID_ARGUMENT,
        Code::Unauthenticated => error_reason::UNAUTHENTICATED,
        Code::Unavailable => error_reason::UNAVAILABLE,
        _ => error_reason::INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Ready, ready};

    use http_body::Frame;
    use http_body_util::StreamBody;
    use tower_layer::Layer;

    use super::*;

    /// Answers every call with what `answer` makes, or never.
    #[derive(Clone)]
    struct Fixed(Option<fn() -> http::Response<Body>>);

    impl Service<http::Request<Body>> for Fixed {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = futures_like::Either<Ready<Result<Self::Response, Infallible>>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            match self.0 {
                Some(answer) => futures_like::Either::Now(ready(Ok(answer()))),
                None => futures_like::Either::Never,
            }
        }
    }

    mod futures_like {
        use std::future::Future;
        use std::pin::Pin;
        use std::task::{Context, Poll};

        pub enum Either<F> {
            Now(F),
            Never,
        }

        impl<F: Future + Unpin> Future for Either<F> {
            type Output = F::Output;

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
                match self.get_mut() {
                    Either::Now(f) => Pin::new(f).poll(cx),
                    Either::Never => Poll::Pending,
                }
            }
        }
    }

    async fn call(inner: Fixed) -> http::Response<Body> {
        let mut service = GiveReasonsLayer {
            call_timeout: Duration::from_millis(50),
        }
        .layer(inner);
        service
            .call(http::Request::new(Body::empty()))
            .await
            .unwrap()
    }

    fn reason_in(headers: &HeaderMap) -> Option<String> {
        error_reason::of(&Status::from_header_map(headers)?).map(|(reason, _)| reason)
    }

    #[tokio::test]
    async fn a_call_past_the_time_limit_is_deadline_exceeded_with_its_reason() {
        let response = call(Fixed(None)).await;
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert_eq!(
            reason_in(response.headers()).as_deref(),
            Some(error_reason::DEADLINE_EXCEEDED)
        );
    }

    #[tokio::test]
    async fn a_trailers_only_status_without_a_reason_gets_its_codes() {
        let response = call(Fixed(Some(|| {
            Status::unimplemented("no such method").into_http()
        })))
        .await;
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unimplemented, "no such method")
        );
        assert_eq!(
            reason_in(response.headers()).as_deref(),
            Some(error_reason::UNIMPLEMENTED)
        );
    }

    #[tokio::test]
    async fn a_status_with_its_reason_is_left_as_it_is() {
        let response = call(Fixed(Some(|| {
            error_reason::status(
                Code::FailedPrecondition,
                "short",
                error_reason::INSUFFICIENT_CREDITS,
                Default::default(),
            )
            .into_http()
        })))
        .await;
        assert_eq!(
            reason_in(response.headers()).as_deref(),
            Some(error_reason::INSUFFICIENT_CREDITS)
        );
    }

    #[tokio::test]
    async fn a_status_in_a_streams_trailers_gets_its_reason() {
        let response = call(Fixed(Some(|| {
            let mut trailers = HeaderMap::new();
            Status::out_of_range("decoded message length too large")
                .add_header(&mut trailers)
                .unwrap();
            let frames = futures::stream::iter([Ok::<_, Status>(Frame::trailers(trailers))]);
            http::Response::new(Body::new(StreamBody::new(frames)))
        })))
        .await;
        let trailers = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .trailers()
            .cloned()
            .unwrap();
        assert_eq!(
            reason_in(&trailers).as_deref(),
            Some(error_reason::MESSAGE_TOO_LARGE)
        );
    }
}
