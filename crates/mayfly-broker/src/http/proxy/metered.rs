//! Counting what crosses the proxy: request bytes as they go up, answer
//! bytes as they come down, and one report when the answer is over or the
//! client has gone away (the body is dropped either way).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::service::{Broker, UseReport};

/// One request's counters; reports to the broker when dropped.
pub(super) struct Meter {
    broker: Arc<Broker>,
    report: UseReport,
    started: Instant,
    up: Arc<AtomicU64>,
    down: u64,
    finished: bool,
}

impl Meter {
    /// A meter for `report`, counting request bytes in `up`.
    pub(super) fn new(
        broker: Arc<Broker>,
        report: UseReport,
        started: Instant,
        up: Arc<AtomicU64>,
    ) -> Meter {
        Meter {
            broker,
            report,
            started,
            up,
            down: 0,
            finished: false,
        }
    }

    /// Reports now, with `status` (an answer that never had a body).
    pub(super) fn close(mut self, status: u16) {
        self.report.status = status;
        self.finished = true;
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let mut report = self.report.clone();
        report.bytes_up = self.up.load(Ordering::Relaxed);
        report.bytes_down = self.down;
        report.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        report.aborted = !self.finished;
        let broker = self.broker.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { broker.record_use(report).await });
        }
    }
}

/// An upstream answer's body, forwarded frame by frame as it arrives,
/// counted by its meter.
pub(super) struct Metered<B> {
    inner: B,
    meter: Meter,
}

impl<B: Body> Metered<B> {
    pub(super) fn new(inner: B, mut meter: Meter, status: u16) -> Metered<B> {
        meter.report.status = status;
        meter.finished = inner.is_end_stream();
        Metered { inner, meter }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.meter.down += data.len() as u64;
                }
                // A body of known length is over with its last byte: the
                // server may never poll it again.
                if this.inner.is_end_stream() {
                    this.meter.finished = true;
                }
            }
            Poll::Ready(None) => this.meter.finished = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
