//! A list the host has collected in full, handed to a guest as a
//! `stream<T>`: as fast as the guest reads, in batches of the size it asks
//! for.

use std::pin::Pin;
use std::task::{Context, Poll};

use wasmtime::StoreContextMut;
use wasmtime::component::{Destination, StreamProducer, StreamResult, VecBuffer};

/// Feeds `items`, each turned into a `T` by `convert`, into a guest's
/// `stream<T>`.
pub struct ListStream<I, T> {
    items: std::vec::IntoIter<I>,
    convert: fn(I) -> T,
    /// Items handed over per read when the reader does not say how many it
    /// wants.
    per_read: usize,
}

impl<I, T> ListStream<I, T> {
    /// A stream of `items`, `per_read` at a time to a reader that does not
    /// say how many it wants.
    pub fn new(items: Vec<I>, per_read: usize, convert: fn(I) -> T) -> Self {
        ListStream {
            items: items.into_iter(),
            convert,
            per_read,
        }
    }
}

impl<D, I, T> StreamProducer<D> for ListStream<I, T>
where
    I: Send + Unpin + 'static,
    T: Send + Sync + 'static,
{
    type Item = T;
    type Buffer = VecBuffer<T>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        mut destination: Destination<'a, T, VecBuffer<T>>,
        _finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let this = self.get_mut();
        if this.items.len() == 0 {
            return Poll::Ready(Ok(StreamResult::Dropped));
        }
        let wanted = match destination.remaining(&mut store) {
            // A zero-length read asks whether we are ready: we always are.
            Some(0) => return Poll::Ready(Ok(StreamResult::Completed)),
            Some(n) => n,
            None => this.per_read,
        };
        let batch: Vec<T> = this.items.by_ref().take(wanted).map(this.convert).collect();
        destination.set_buffer(batch.into());
        Poll::Ready(Ok(StreamResult::Completed))
    }
}
