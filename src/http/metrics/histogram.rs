//! A histogram whose observations are a few atomic additions. prometheus-client's own takes a
//! mutex on every observation; with three histograms per request that lock was where the cost
//! of `/metrics` went at tens of thousands of manifest GETs a second.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; one more count than bounds, for +Inf.
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    /// The sum of observations, as f64 bits.
    sum: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> AtomicHistogram {
        let bounds: Vec<f64> = bounds.into_iter().collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram {
            inner: Arc::new(Inner {
                bounds,
                counts,
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self.inner.bounds.partition_point(|b| *b < v);
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .inner
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some((f64::from_bits(s) + v).to_bits()));
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per-bucket counts, as the encoder wants them (it adds them up itself).
        let counts: Vec<u64> = self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts.iter().copied())
            .collect();
        let count = counts.iter().sum();
        let sum = f64::from_bits(self.inner.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = AtomicHistogram::new([1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        let counts: Vec<u64> = h.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, vec![2, 1, 1]);
        assert_eq!(f64::from_bits(h.inner.sum.load(Ordering::Relaxed)), 6.0);
    }
}
