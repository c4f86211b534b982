//! The consuming side of an input channel: reads events, batches MOVE samples until a frame,
//! and answers one finished signal per sequence number.
//!
//! Batching. With a frame time (`consume(Some(frame_time))`), MOVE samples are kept per
//! (device, source) and delivered once per frame as one [`ConsumedEvent::Motion`] that carries
//! the sequence numbers of every sample it stands for. Android resamples the pointer positions
//! at `frame_time − 5 ms`; this consumer does not resample: the delivered event is the newest
//! sample taken at or before the frame time (samples after it wait for the next frame). Any
//! other motion of the same (device, source) (DOWN, UP, CANCEL) first flushes the batch, so
//! the application sees the gesture in order. Without a frame time (`consume(None)`) nothing is
//! batched and every pending batch is flushed.
//!
//! Finishing. [`InputConsumer::finish`] queues one FINISHED per sequence number of the event
//! (all the seqs of a batch, with one consume time) and sends as many as the channel takes;
//! the rest wait in the consumer and go out on the next call (a full channel is not an error).

use std::collections::VecDeque;

use super::channel::{ChannelError, InputChannel};
use super::message::{InputMessage, KeyEvent, MotionEvent, MOTION_ACTION_MOVE};
use super::now_nanos;

/// An event delivered to the application.
#[derive(Clone, Debug, PartialEq)]
pub enum ConsumedEvent {
    /// A key event.
    Key {
        /// Its sequence number.
        seq: u32,
        /// The event.
        event: KeyEvent,
    },
    /// A motion event; a batch of MOVE samples is delivered as its newest sample.
    Motion {
        /// The sequence numbers of every sample this event stands for, oldest first.
        seqs: Vec<u32>,
        /// The (newest) sample.
        event: MotionEvent,
    },
    /// A focus change.
    Focus {
        /// Its sequence number.
        seq: u32,
        /// Whether the window has focus now.
        has_focus: bool,
        /// Whether the device is in touch mode.
        in_touch_mode: bool,
    },
}

impl ConsumedEvent {
    /// The sequence numbers this event answers for.
    pub fn seqs(&self) -> &[u32] {
        match self {
            ConsumedEvent::Key { seq, .. } | ConsumedEvent::Focus { seq, .. } => {
                std::slice::from_ref(seq)
            }
            ConsumedEvent::Motion { seqs, .. } => seqs,
        }
    }
}

/// Counters of a consumer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Messages received.
    pub messages: u64,
    /// Events delivered to the application.
    pub delivered: u64,
    /// Delivered motion events that stood for more than one sample.
    pub batches: u64,
    /// Samples that were merged into such batches.
    pub batched_samples: u64,
    /// Finished signals sent.
    pub finished_sent: u64,
    /// Malformed or unexpected messages received.
    pub rejected: u64,
}

#[derive(Debug)]
struct MotionBatch {
    device_id: i32,
    source: u32,
    samples: VecDeque<(u32, MotionEvent)>,
}

/// Consumes events from the client end of an input channel.
#[derive(Debug)]
pub struct InputConsumer {
    channel: InputChannel,
    batches: Vec<MotionBatch>,
    unsent: VecDeque<InputMessage>,
    deferred_error: Option<ChannelError>,
    stats: ConsumerStats,
}

impl InputConsumer {
    /// A consumer on `channel`.
    pub fn new(channel: InputChannel) -> InputConsumer {
        InputConsumer {
            channel,
            batches: Vec::new(),
            unsent: VecDeque::new(),
            deferred_error: None,
            stats: ConsumerStats::default(),
        }
    }

    /// The channel.
    pub fn channel(&self) -> &InputChannel {
        &self.channel
    }

    /// Counters.
    pub fn stats(&self) -> ConsumerStats {
        self.stats
    }

    /// Whether MOVE samples wait in a batch for a later frame.
    pub fn has_pending_batch(&self) -> bool {
        self.batches.iter().any(|b| !b.samples.is_empty())
    }

    /// Finished signals queued because the channel was full.
    pub fn unsent_finished(&self) -> usize {
        self.unsent.len()
    }

    /// Read every message queued on the channel and return the events ready for the
    /// application, in order (see the module doc for batching). `Ok` with an empty list when
    /// nothing is ready. [`ChannelError::DeadObject`] once the publisher is gone and every
    /// event it sent was delivered; [`ChannelError::Malformed`] / [`ChannelError::Unexpected`]
    /// for a rejected packet (reported after the events read before it).
    pub fn consume(&mut self, frame_time: Option<i64>) -> Result<Vec<ConsumedEvent>, ChannelError> {
        let mut out = Vec::new();
        if self.deferred_error.is_none() {
            loop {
                match self.channel.receive_message() {
                    Ok(message) => {
                        self.stats.messages += 1;
                        self.accept(message, frame_time.is_some(), &mut out);
                        if self.deferred_error.is_some() {
                            break;
                        }
                    }
                    Err(ChannelError::WouldBlock) => break,
                    Err(e) => {
                        if matches!(e, ChannelError::Malformed(_)) {
                            self.stats.rejected += 1;
                        }
                        self.deferred_error = Some(e);
                        break;
                    }
                }
            }
        }
        // Flush what is due: everything without batching (or once the publisher is dead),
        // else the samples taken at or before the frame.
        let dead = matches!(self.deferred_error, Some(ChannelError::DeadObject));
        let due = if dead { None } else { frame_time };
        for i in 0..self.batches.len() {
            self.flush_batch(i, due, &mut out);
        }
        self.batches.retain(|b| !b.samples.is_empty());
        if out.is_empty() {
            if let Some(e) = self.deferred_error.take() {
                if matches!(e, ChannelError::DeadObject) {
                    // Dead stays dead.
                    self.deferred_error = Some(ChannelError::DeadObject);
                }
                return Err(e);
            }
        }
        self.stats.delivered += out.len() as u64;
        Ok(out)
    }

    fn accept(&mut self, message: InputMessage, batching: bool, out: &mut Vec<ConsumedEvent>) {
        match message {
            InputMessage::Key { seq, event } => out.push(ConsumedEvent::Key { seq, event }),
            InputMessage::Focus {
                seq,
                has_focus,
                in_touch_mode,
            } => out.push(ConsumedEvent::Focus {
                seq,
                has_focus,
                in_touch_mode,
            }),
            InputMessage::Motion { seq, event } => {
                let slot = self
                    .batches
                    .iter()
                    .position(|b| b.device_id == event.device_id && b.source == event.source);
                if batching && event.action == MOTION_ACTION_MOVE {
                    let i = slot.unwrap_or_else(|| {
                        self.batches.push(MotionBatch {
                            device_id: event.device_id,
                            source: event.source,
                            samples: VecDeque::new(),
                        });
                        self.batches.len() - 1
                    });
                    self.batches[i].samples.push_back((seq, event));
                } else {
                    if let Some(i) = slot {
                        self.flush_batch(i, None, out);
                    }
                    out.push(ConsumedEvent::Motion {
                        seqs: vec![seq],
                        event,
                    });
                }
            }
            InputMessage::Finished { seq, .. } => {
                self.stats.rejected += 1;
                if self.deferred_error.is_none() {
                    self.deferred_error = Some(ChannelError::Unexpected {
                        kind: "finished",
                        seq,
                    });
                }
            }
        }
    }

    /// Deliver the samples of batch `i` taken at or before `until` (all of them for `None`)
    /// as one event.
    fn flush_batch(&mut self, i: usize, until: Option<i64>, out: &mut Vec<ConsumedEvent>) {
        let samples = &mut self.batches[i].samples;
        let take = match until {
            None => samples.len(),
            Some(t) => samples
                .iter()
                .take_while(|(_, e)| e.event_time <= t)
                .count(),
        };
        if take == 0 {
            return;
        }
        let mut seqs = Vec::with_capacity(take);
        let mut newest = None;
        for (seq, event) in samples.drain(..take) {
            seqs.push(seq);
            newest = Some(event);
        }
        if take > 1 {
            self.stats.batches += 1;
            self.stats.batched_samples += take as u64;
        }
        if let Some(event) = newest {
            out.push(ConsumedEvent::Motion { seqs, event });
        }
    }

    /// Answer every sequence number of `event` with a FINISHED (one consume time for all),
    /// sending what the channel takes now; the rest go out on later calls.
    pub fn finish(&mut self, event: &ConsumedEvent, handled: bool) -> Result<(), ChannelError> {
        let consume_time = now_nanos();
        for &seq in event.seqs() {
            self.unsent.push_back(InputMessage::Finished {
                seq,
                handled,
                consume_time,
            });
        }
        self.flush_finished()
    }

    /// Answer one sequence number with a FINISHED.
    pub fn finish_seq(&mut self, seq: u32, handled: bool) -> Result<(), ChannelError> {
        self.unsent.push_back(InputMessage::Finished {
            seq,
            handled,
            consume_time: now_nanos(),
        });
        self.flush_finished()
    }

    /// Send queued finished signals until none is left or the channel is full.
    pub fn flush_finished(&mut self) -> Result<(), ChannelError> {
        while let Some(message) = self.unsent.front() {
            match self.channel.send_message(message) {
                Ok(()) => {
                    self.unsent.pop_front();
                    self.stats.finished_sent += 1;
                }
                Err(ChannelError::WouldBlock) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
