//! A request body a handler stopped reading (it answered 401, 404 or 416 first, or storage
//! failed partway) is read out to its end after the answer, within limits. Otherwise the
//! server closes the connection with the client's bytes still unread, the kernel answers them
//! with a reset, and a client still sending sees "broken pipe" or "connection reset" instead of
//! the error it was given. distribution's Go server discards such bodies too.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// At most this much of an unread body is read and dropped; past it, the connection is closed
/// as before. Enough for any manifest or chunk a client sends before it looks at the answer.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// And for at most this long, so a slow client cannot keep a drained connection for free.
const DRAIN_TIME: Duration = Duration::from_secs(10);

pub struct DrainOnDrop<B: Body + Send + Unpin + 'static> {
    inner: Option<B>,
}

impl<B: Body + Send + Unpin + 'static> DrainOnDrop<B> {
    pub fn new(inner: B) -> Self {
        DrainOnDrop { inner: Some(inner) }
    }
}

impl<B> Body for DrainOnDrop<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl<B: Body + Send + Unpin + 'static> Drop for DrainOnDrop<B> {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else { return };
        if body.is_end_stream() {
            return;
        }
        // Dropped outside a runtime only when the server is gone, and the connection with it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(DRAIN_TIME, discard(body)).await;
            });
        }
    }
}

/// Reads and drops frames until the body ends, fails, or passes DRAIN_BYTES.
async fn discard<B: Body + Unpin>(mut body: B) {
    let mut seen = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            seen += bytes::Buf::remaining(data) as u64;
            if seen > DRAIN_BYTES {
                return;
            }
        }
    }
}
