//! Parts of a multipart upload sent while the request body is still being read: with the upload
//! of one part overlapping the receipt of the next, a push runs at the slower of the client and
//! the store instead of at their sum. At most [`PARTS_IN_FLIGHT`] parts are out at once, so a
//! request holds at most that many parts plus the one being filled.

use super::client::Client;
use super::store_error;
use crate::store::{StoreError, StoreErrorKind, StoreResult};
use bytes::Bytes;
use object_store::multipart::PartId;
use object_store::path::Path as Key;
use object_store::PutPayload;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Parts uploading at once for one request. Two keep the link to the store busy while a third
/// fills; more would add memory (a part each) for little, as parts of one upload share the
/// store's disk. With each part in a buffer of its own size (see `append_parts`), a 1 GiB push
/// peaks at about 46 MiB with the default chunk size; one in flight saved 10 MiB of that but
/// pushed at 1.8-2.6x distribution where two gave 2.1-2.8x.
pub const PARTS_IN_FLIGHT: usize = 2;

type Sending = JoinHandle<object_store::Result<PartId>>;

/// The parts of one request, numbered on from `first_index`, finished in order.
pub struct PartPipeline {
    s3: Arc<dyn Client>,
    key: Key,
    upload: String,
    next_index: usize,
    sending: VecDeque<(u64, Sending)>,
}

impl PartPipeline {
    pub fn new(s3: Arc<dyn Client>, key: Key, upload: String, first_index: usize) -> PartPipeline {
        PartPipeline {
            s3,
            key,
            upload,
            next_index: first_index,
            sending: VecDeque::new(),
        }
    }

    /// Starts sending `part`, after waiting for the oldest one if [`PARTS_IN_FLIGHT`] are out;
    /// returns the parts that finished meanwhile, in order, with their sizes.
    pub async fn send(&mut self, part: Bytes) -> StoreResult<Vec<(PartId, u64)>> {
        let mut done = Vec::new();
        if self.sending.len() >= PARTS_IN_FLIGHT {
            done.push(self.finish_oldest().await?);
        }
        let (s3, key, upload, index) = (self.s3.clone(), self.key.clone(), self.upload.clone(), self.next_index);
        let len = part.len() as u64;
        self.sending.push_back((
            len,
            tokio::spawn(async move { s3.put_part(&key, &upload, index, PutPayload::from(part)).await }),
        ));
        self.next_index += 1;
        Ok(done)
    }

    /// Sends `part` alone and waits for it.
    pub async fn send_one(mut self, part: Bytes) -> StoreResult<Vec<(PartId, u64)>> {
        let mut done = self.send(part).await?;
        done.extend(self.finish().await?);
        Ok(done)
    }

    async fn finish_oldest(&mut self) -> StoreResult<(PartId, u64)> {
        let Some((len, sending)) = self.sending.pop_front() else {
            return Err(StoreError::new(StoreErrorKind::Backend, "no part is being sent"));
        };
        let id = sending
            .await
            .map_err(|e| StoreError::new(StoreErrorKind::Backend, format!("sending a part: {e}")))?
            .map_err(store_error)?;
        Ok((id, len))
    }

    /// Waits for every part still out; the parts in order, with their sizes.
    pub async fn finish(mut self) -> StoreResult<Vec<(PartId, u64)>> {
        let mut done = Vec::new();
        while !self.sending.is_empty() {
            done.push(self.finish_oldest().await?);
        }
        Ok(done)
    }
}

impl Drop for PartPipeline {
    /// A request that failed stops its parts: none of them is recorded, and the retry sends
    /// them again under the same numbers.
    fn drop(&mut self) {
        for (_, sending) in &self.sending {
            sending.abort();
        }
    }
}
