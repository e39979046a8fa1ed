//! Write admission control: a memory budget for writes in flight (being read,
//! decompressed, parsed, or waiting for the engine). A write is charged its request
//! bytes while it is read, then its parsed rows' estimated size (typically 5-10x the
//! line protocol). The engine bounds memtable
//! memory; this bounds what queues in front of it, so an overload gets fast 503s with
//! `Retry-After` instead of a growing pile of parsed batches and, eventually, an OOM.

use std::sync::Arc;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ServerState;
use super::body::{declared_length, read_charged, read_limited};
use crate::error::ServerError;

/// Read a write request's body under admission control. It is admitted before reading
/// (1 KiB, so a full budget refuses it without reading it), then charged its bytes as
/// they arrive, not as declared: four clients that declare 64 MiB and stall hold a
/// few KiB, not the whole budget (and `limits.body_read_timeout` ends them). The caller
/// holds the permit until the write is acknowledged or refused.
pub(super) async fn read_admitted(
    state: &ServerState,
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<(Bytes, OwnedSemaphorePermit), ServerError> {
    if declared_length(headers).is_some_and(|n| n > limit) {
        return Err(ServerError::PayloadTooLarge { limit });
    }
    let mut permit = match state.write_admission.admit(0) {
        Ok(permit) => permit,
        Err(refused) => {
            // Read and discard the body (never buffered), so the 503 goes back on a
            // connection the client can keep using; answering before the body is
            // read makes the server close it, and a client still sending sees a
            // reset instead of the 503.
            let _ = read_limited(state, headers, drain(body), limit).await;
            return Err(refused);
        }
    };
    let admission = &state.write_admission;
    let raw = read_charged(state, headers, body, limit, |bytes| {
        admission.grow(&mut permit, bytes)
    })
    .await?;
    Ok((raw, permit))
}

/// `body` with every chunk dropped as it arrives (nothing is kept in memory).
fn drain(body: Body) -> Body {
    use futures::StreamExt;
    Body::from_stream(
        body.into_data_stream()
            .map(|chunk| chunk.map(|_| bytes::Bytes::new())),
    )
}

/// The budget, in KiB permits.
#[derive(Debug)]
pub(crate) struct WriteAdmission {
    permits: Arc<Semaphore>,
    total_kib: u32,
    limit: u64,
}

impl WriteAdmission {
    pub(crate) fn new(limit_bytes: u64) -> Self {
        let total_kib = u32::try_from(limit_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX >> 3)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        Self {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            limit: limit_bytes,
        }
    }

    /// Admit a write of `bytes` request bytes, or refuse it at once. A request larger
    /// than the whole budget is admitted only when nothing else is in flight (the body
    /// limit, not this, caps a single request). The permit is held until dropped.
    pub(crate) fn admit(&self, bytes: u64) -> Result<OwnedSemaphorePermit, ServerError> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        Arc::clone(&self.permits)
            .try_acquire_many_owned(kib)
            .map_err(|_| ServerError::WritesInFlight { limit: self.limit })
    }

    /// Grow an admitted write's share to `bytes` (its parsed size, once known), or
    /// refuse it. Never shrinks; capped at the whole budget like [`Self::admit`].
    pub(crate) fn grow(
        &self,
        permit: &mut OwnedSemaphorePermit,
        bytes: u64,
    ) -> Result<(), ServerError> {
        let want = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib) as usize;
        let have = permit.num_permits();
        if want > have {
            let more = Arc::clone(&self.permits)
                .try_acquire_many_owned((want - have) as u32)
                .map_err(|_| ServerError::WritesInFlight { limit: self.limit })?;
            permit.merge(more);
        }
        Ok(())
    }

    /// Bytes (in KiB) currently admitted.
    pub(crate) fn in_flight_kib(&self) -> u32 {
        self.total_kib - self.permits.available_permits() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_within_the_budget_and_refuses_past_it() {
        let a = WriteAdmission::new(10 * 1024);
        let p1 = a.admit(6 * 1024).expect("first");
        assert_eq!(a.in_flight_kib(), 6);
        let err = a.admit(5 * 1024).expect_err("over budget");
        assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.to_string().contains("limits.max_inflight_write_bytes"));
        let p2 = a.admit(4 * 1024).expect("fits exactly");
        drop(p1);
        drop(p2);
        assert_eq!(a.in_flight_kib(), 0);
        // Larger than the whole budget: admitted alone, refused alongside another.
        let big = a.admit(1 << 30).expect("alone");
        assert!(a.admit(1).is_err());
        drop(big);
        assert!(a.admit(0).is_ok(), "an empty body still takes one permit");
        // Growing to the parsed size: within the budget, then past it.
        let mut p = a.admit(1024).expect("1 KiB");
        a.grow(&mut p, 8 * 1024).expect("grow to 8 KiB");
        assert_eq!(a.in_flight_kib(), 8);
        let other = a.admit(2 * 1024).expect("2 KiB more");
        assert!(a.grow(&mut p, 9 * 1024).is_err(), "would exceed 10 KiB");
        drop(other);
        drop(p);
        assert_eq!(a.in_flight_kib(), 0);
    }
}
