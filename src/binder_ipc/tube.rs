//! BitTubes over binder: a tube end travels in a [`Parcel`] as a `BINDER_TYPE_FD` object,
//! and [`EventSender`] / [`EventReceiver`] put a typed event channel on top (events one way,
//! `u32` acknowledgement counts back on the same tube).

use crate::binder_ipc::parcel::Parcel;
use crate::binder_ipc::runtime::BinderError;
use crate::bittube::{BitTube, TubeEnd, TubeError};
use bytemuck::Pod;
use std::marker::PhantomData;
use std::time::Duration;

/// Moves `tube`'s travelling end into `parcel` (Android's `BitTube::writeToParcel`): the
/// writer keeps only its own end; a second call is an error.
pub fn write_tube(parcel: &mut Parcel, tube: &mut BitTube) -> Result<(), BinderError> {
    let end = tube
        .take_remote()
        .map_err(|e| BinderError::BadValue(format!("the tube's travelling end: {e}")))?;
    parcel.write_fd(end.into())?;
    Ok(())
}

/// Reads a tube end from `parcel`: the fd must be a SOCK_SEQPACKET Unix socket.
pub fn read_tube(parcel: &mut Parcel) -> Result<TubeEnd, BinderError> {
    let fd = parcel.read_fd()?;
    TubeEnd::try_from_socket(fd).map_err(|e| BinderError::BadValue(format!("not a tube end: {e}")))
}

/// The sending side of a typed event channel: batches of `T` out, acknowledgement counts in.
#[derive(Debug)]
pub struct EventSender<T: Pod> {
    end: TubeEnd,
    acked: u64,
    _t: PhantomData<T>,
}

impl<T: Pod> EventSender<T> {
    /// A sender on `end`.
    pub fn new(end: TubeEnd) -> Self {
        EventSender {
            end,
            acked: 0,
            _t: PhantomData,
        }
    }

    /// The tube end (for mio registration).
    pub fn end(&self) -> &TubeEnd {
        &self.end
    }

    /// Sends `events` as one packet; `WouldBlock` when the tube is full.
    pub fn send(&self, events: &[T]) -> Result<usize, TubeError> {
        self.end.send_batch(events)
    }

    /// Sends `events` as one packet, waiting up to `timeout` for room.
    pub fn send_timeout(&self, events: &[T], timeout: Duration) -> Result<usize, TubeError> {
        self.end.send_batch_timeout(events, timeout)
    }

    /// Reads every acknowledgement waiting (never blocks); returns the total acknowledged so
    /// far. A closed receiver is `PeerClosed`.
    pub fn poll_acks(&mut self) -> Result<u64, TubeError> {
        let mut acks = [0u32; 64];
        loop {
            match self.end.recv_batch(&mut acks) {
                Ok(n) => self.acked += acks[..n].iter().map(|&a| a as u64).sum::<u64>(),
                Err(TubeError::WouldBlock) => return Ok(self.acked),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits up to `timeout` for an acknowledgement; returns the total acknowledged so far.
    pub fn wait_acks(&mut self, timeout: Duration) -> Result<u64, TubeError> {
        let mut acks = [0u32; 64];
        let n = self.end.recv_batch_timeout(&mut acks, timeout)?;
        self.acked += acks[..n].iter().map(|&a| a as u64).sum::<u64>();
        self.poll_acks()
    }
}

/// The receiving side of a typed event channel.
#[derive(Debug)]
pub struct EventReceiver<T: Pod> {
    end: TubeEnd,
    _t: PhantomData<T>,
}

impl<T: Pod> EventReceiver<T> {
    /// A receiver on `end`.
    pub fn new(end: TubeEnd) -> Self {
        EventReceiver {
            end,
            _t: PhantomData,
        }
    }

    /// The tube end (for mio registration).
    pub fn end(&self) -> &TubeEnd {
        &self.end
    }

    /// Reads one packet of events into `buf`; `WouldBlock` when none waits, `PeerClosed`
    /// when the sender is gone.
    pub fn recv(&self, buf: &mut [T]) -> Result<usize, TubeError> {
        self.end.recv_batch(buf)
    }

    /// Reads one packet, waiting up to `timeout`.
    pub fn recv_timeout(&self, buf: &mut [T], timeout: Duration) -> Result<usize, TubeError> {
        self.end.recv_batch_timeout(buf, timeout)
    }

    /// Acknowledges `count` events to the sender.
    pub fn ack(&self, count: u32) -> Result<(), TubeError> {
        self.end
            .send_batch_timeout(&[count], Duration::from_secs(5))
            .map(drop)
    }
}
