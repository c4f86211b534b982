//! The publishing side of an input channel: sends key, motion and focus events, reads the
//! consumer's finished signals.

use super::channel::{ChannelError, InputChannel};
use super::message::{InputMessage, KeyEvent, MotionEvent};

/// A finished signal read back from the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The sequence number of the event that was finished.
    pub seq: u32,
    /// Whether the application handled it.
    pub handled: bool,
    /// When the application consumed it, `CLOCK_MONOTONIC` nanoseconds.
    pub consume_time: i64,
}

/// Publishes events on the server end of an input channel.
#[derive(Debug)]
pub struct InputPublisher {
    channel: InputChannel,
}

impl InputPublisher {
    /// A publisher on `channel`.
    pub fn new(channel: InputChannel) -> InputPublisher {
        InputPublisher { channel }
    }

    /// The channel.
    pub fn channel(&self) -> &InputChannel {
        &self.channel
    }

    /// Publish a key event with sequence number `seq`.
    pub fn publish_key(&self, seq: u32, event: &KeyEvent) -> Result<(), ChannelError> {
        self.channel
            .send_message(&InputMessage::Key { seq, event: *event })
    }

    /// Publish a motion event with sequence number `seq`; a bad pointer count (0 or more
    /// than 16) is refused before anything is sent.
    pub fn publish_motion(&self, seq: u32, event: &MotionEvent) -> Result<(), ChannelError> {
        event.validate()?;
        self.channel.send_message(&InputMessage::Motion {
            seq,
            event: event.clone(),
        })
    }

    /// Publish a focus change with sequence number `seq`.
    pub fn publish_focus(
        &self,
        seq: u32,
        has_focus: bool,
        in_touch_mode: bool,
    ) -> Result<(), ChannelError> {
        self.channel.send_message(&InputMessage::Focus {
            seq,
            has_focus,
            in_touch_mode,
        })
    }

    /// Publish any event message (not a finished signal).
    pub fn publish(&self, message: &InputMessage) -> Result<(), ChannelError> {
        if let InputMessage::Finished { seq, .. } = message {
            return Err(ChannelError::Unexpected {
                kind: "finished",
                seq: *seq,
            });
        }
        self.channel.send_message(message)
    }

    /// Read one finished signal. [`ChannelError::WouldBlock`] when none is queued,
    /// [`ChannelError::DeadObject`] when the consumer is gone, [`ChannelError::Malformed`] or
    /// [`ChannelError::Unexpected`] for a packet that is not a valid finished signal (it is
    /// consumed; the next call reads the next one).
    pub fn receive_finished(&self) -> Result<Finished, ChannelError> {
        match self.channel.receive_message()? {
            InputMessage::Finished {
                seq,
                handled,
                consume_time,
            } => Ok(Finished {
                seq,
                handled,
                consume_time,
            }),
            other => Err(ChannelError::Unexpected {
                kind: other.kind_name(),
                seq: other.seq(),
            }),
        }
    }
}
