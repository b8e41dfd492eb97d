//! Reusable buffers for combinators that evaluate their inner map at a
//! shifted or scaled copy of the input.
//!
//! [`Prox::prox`](optlayer_core::Prox::prox) receives no scratch memory:
//! its input is read-only and its output may not alias the input. A
//! combinator such as `v ↦ b + prox_f(v − b)` must therefore keep `v − b`
//! somewhere else. [`ScratchPool`] keeps such buffers between calls.

use std::sync::{Mutex, MutexGuard};

use optlayer_core::Scalar;

/// Columns handed to an inner map per call. Buffers hold at most
/// `CHUNK_COLS` columns, so their size does not grow with the batch.
pub(super) const CHUNK_COLS: usize = 32;

/// Buffers reused across calls, one per caller running at the same time.
///
/// A call takes a free buffer, or creates one when every buffer is in use,
/// and returns it afterwards. A buffer grows to at most
/// `copies x rows x CHUNK_COLS` entries, so once every thread that calls
/// the map has made its first call with the largest `copies`, calls
/// allocate nothing. The lock is held only to take and return a buffer,
/// not while the inner map runs.
pub(super) struct ScratchPool<T> {
    free: Mutex<Vec<Vec<T>>>,
}

impl<T: Scalar> ScratchPool<T> {
    pub(super) fn new() -> Self {
        Self {
            free: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<T>>> {
        // A panic while the lock is held can only interrupt a push or pop of
        // a whole buffer, which leaves the list valid.
        self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` with a buffer of exactly `len` entries, whose contents are
    /// left from earlier calls.
    pub(super) fn with<R>(&self, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
        let mut buffer = self.lock().pop().unwrap_or_default();
        if buffer.len() < len {
            buffer.resize(len, T::zero());
        }
        let result = f(&mut buffer[..len]);
        self.lock().push(buffer);
        result
    }
}

impl<T: Scalar> ScratchPool<T> {
    /// Runs `f(start, cols, buffer)` for each block of at most
    /// [`CHUNK_COLS`] columns of a batch of `batch` columns, where block
    /// `start..start + cols` gets a buffer of `copies * rows * cols` entries.
    pub(super) fn for_each_chunk(
        &self,
        rows: usize,
        batch: usize,
        copies: usize,
        mut f: impl FnMut(usize, usize, &mut [T]),
    ) {
        if batch == 0 {
            return;
        }
        let width = batch.min(CHUNK_COLS);
        self.with(copies * rows * width, |buffer| {
            for start in (0..batch).step_by(CHUNK_COLS) {
                let cols = width.min(batch - start);
                f(start, cols, &mut buffer[..copies * rows * cols]);
            }
        });
    }
}
