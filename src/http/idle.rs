//! Connection-level limits that hyper does not give: a connection that sends nothing with no
//! request in flight (silent from the start, or idle between keep-alive requests), and one
//! whose client stops reading its response, are closed after a limit. Without them one client
//! could hold any number of sockets and tasks for free.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

struct State {
    /// Last time bytes moved either way, or a request finished.
    last: Instant,
    /// Since when a response write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
    in_flight: usize,
}

/// What a connection has been doing, shared by its socket wrapper, its requests and its watchdog.
pub struct Activity(Mutex<State>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity(Mutex::new(State {
            last: Instant::now(),
            write_blocked_since: None,
            in_flight: 0,
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn moved(&self) {
        self.state().last = Instant::now();
    }

    /// Marks a request in flight until the returned guard (kept with its response body) drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.state().in_flight += 1;
        InFlight(self.clone())
    }

    /// Whether the connection should be closed: idle longer than `idle` with nothing in flight,
    /// or a response write blocked longer than `stalled_write` (zero disables either).
    fn expired(&self, idle: Duration, stalled_write: Duration) -> bool {
        let s = self.state();
        let now = Instant::now();
        let idle_out = !idle.is_zero() && s.in_flight == 0 && now.duration_since(s.last) > idle;
        let write_out = !stalled_write.is_zero() && s.write_blocked_since.is_some_and(|t| now.duration_since(t) > stalled_write);
        idle_out || write_out
    }
}

pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.last = Instant::now();
    }
}

/// Resolves when the connection has been idle or blocked too long; the caller then drops it.
pub async fn watchdog(activity: Arc<Activity>, idle: Duration, stalled_write: Duration) {
    if idle.is_zero() && stalled_write.is_zero() {
        return std::future::pending().await;
    }
    let shortest = [idle, stalled_write].into_iter().filter(|d| !d.is_zero()).min().unwrap_or(idle);
    let tick = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if activity.expired(idle, stalled_write) {
            return;
        }
    }
}

/// A socket that reports its progress to an `Activity`.
pub struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, activity: Arc<Activity>) -> Self {
        Watched { io, activity }
    }

    fn wrote<T>(&self, polled: &Poll<io::Result<T>>, progressed: bool) {
        let mut s = self.activity.state();
        match polled {
            Poll::Pending => {
                s.write_blocked_since.get_or_insert_with(Instant::now);
            }
            Poll::Ready(_) => {
                s.write_blocked_since = None;
                if progressed {
                    s.last = Instant::now();
                }
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.moved();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        let progressed = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.wrote(&polled, progressed);
        polled
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        let progressed = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.wrote(&polled, progressed);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.wrote(&polled, false);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted as in flight until it is sent or dropped.
pub struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        TrackedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
