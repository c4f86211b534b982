//! An input channel: one end of a SEQPACKET [`BitTube`] with 32 KiB buffers, one message per
//! packet.
//!
//! [`InputChannel::pair`] makes both ends (the dispatcher keeps the server end, the client end
//! travels to the application). Both are non-blocking. Outcomes are never confused:
//! [`ChannelError::WouldBlock`] (nothing to read / no room now) is not
//! [`ChannelError::DeadObject`] (`EPIPE`, `ECONNRESET`, ... or end of stream: the peer is gone),
//! and a packet that is not a well-formed message is [`ChannelError::Malformed`], consumed and
//! not read.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::message::{InputMessage, MessageError, MAX_MESSAGE_SIZE};
use crate::bittube::{BitTube, TubeEnd, TubeError};

/// Send and receive buffer size of both ends of an input channel (as Android's).
pub const INPUT_CHANNEL_BUFFER_SIZE: usize = 32 * 1024;

/// Receive buffer: larger than any valid message, so an oversized one still shows its header
/// (and is rejected by type), and only absurd packets are discarded unread.
const RECEIVE_BUFFER_SIZE: usize = 4096;

/// What can go wrong on an input channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Nothing to read now, or no room to write now (`EAGAIN`). The peer is alive.
    #[error("the input channel would block")]
    WouldBlock,
    /// The peer's end is closed (`EPIPE`, `ECONNRESET`, `ENOTCONN`, `ECONNREFUSED`, or a
    /// 0-byte read at end of stream).
    #[error("the input channel's peer is dead")]
    DeadObject,
    /// A received packet is not a valid message (it was consumed, not read), or a message to
    /// send is invalid.
    #[error("malformed input message: {0}")]
    Malformed(#[from] MessageError),
    /// A valid message of a type this side does not accept.
    #[error("unexpected {kind} message (seq {seq}) on this end of the channel")]
    Unexpected {
        /// Type of the message.
        kind: &'static str,
        /// Its seq.
        seq: u32,
    },
    /// Any other socket error.
    #[error("input channel socket error: {0}")]
    Tube(TubeError),
}

impl From<TubeError> for ChannelError {
    fn from(e: TubeError) -> ChannelError {
        match e {
            TubeError::WouldBlock => ChannelError::WouldBlock,
            TubeError::PeerClosed => ChannelError::DeadObject,
            TubeError::EmptyPacket => ChannelError::Malformed(MessageError::TooShort { len: 0 }),
            TubeError::Truncated { len, .. } => {
                ChannelError::Malformed(MessageError::TooLong { len })
            }
            other => ChannelError::Tube(other),
        }
    }
}

/// One end of an input channel.
#[derive(Debug)]
pub struct InputChannel {
    name: String,
    tube: TubeEnd,
}

impl InputChannel {
    /// A connected pair `(server, client)` named `name`, with
    /// [`INPUT_CHANNEL_BUFFER_SIZE`] send and receive buffers on both ends.
    pub fn pair(name: &str) -> Result<(InputChannel, InputChannel), ChannelError> {
        let tube = BitTube::with_buffer_size(INPUT_CHANNEL_BUFFER_SIZE)?;
        let (server, client) = tube.into_ends()?;
        Ok((
            InputChannel::from_tube_end(name, server),
            InputChannel::from_tube_end(name, client),
        ))
    }

    /// Wrap a tube end received from elsewhere (all calls are non-blocking whatever the fd's
    /// flags say).
    pub fn from_tube_end(name: &str, tube: TubeEnd) -> InputChannel {
        InputChannel {
            name: name.to_owned(),
            tube,
        }
    }

    /// The channel's name (the window's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying tube end.
    pub fn tube(&self) -> &TubeEnd {
        &self.tube
    }

    /// Give up the channel for its tube end (to hand it to another process).
    pub fn into_tube_end(self) -> TubeEnd {
        self.tube
    }

    /// Send one message as one packet.
    pub fn send_message(&self, message: &InputMessage) -> Result<(), ChannelError> {
        let mut buf = [0u8; MAX_MESSAGE_SIZE];
        let len = message.encode(&mut buf)?;
        self.tube.send_batch::<u8>(&buf[..len])?;
        Ok(())
    }

    /// Receive one message (one packet), validated exactly.
    pub fn receive_message(&self) -> Result<InputMessage, ChannelError> {
        let mut buf = [0u8; RECEIVE_BUFFER_SIZE];
        let len = self.tube.recv_batch::<u8>(&mut buf)?;
        Ok(InputMessage::decode(&buf[..len])?)
    }

    /// Wait up to `timeout` until a message (or the peer's hang-up) can be read; `Ok(false)`
    /// if the time ran out.
    pub fn wait_readable(&self, timeout: Duration) -> Result<bool, ChannelError> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.tube.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) => Ok(n > 0),
            Err(Errno::EINTR) => Ok(false),
            Err(e) => Err(ChannelError::Tube(e.into())),
        }
    }
}

impl AsFd for InputChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tube.as_fd()
    }
}
