//! The seeds, one function per target, each built from the crate's own writers.

use crate::bc::{self, Cmd, Content, Obj, Txn};
use crate::frames::{self, Frame};
use crate::input;
use crate::parcel::{self, ReadOp, Source, WriteOp};
use crate::sensor::{self, DirectOp, QueueOp};
use bittube::binder_ipc::parcel::{AidlException, BinderObject, Parcel, EX_SERVICE_SPECIFIC};
use bittube::binder_ipc::uapi::*;
use bittube::input_demo::message::*;
use bittube::sensor_demo::event::{SensorEvent, WAKE_UP_NEEDS_ACK};

type Seed = (&'static str, String, Vec<u8>);

/// Every seed: (target, file name, bytes).
pub fn all() -> Vec<Seed> {
    let mut v = Vec::new();
    v.extend(parcel_seeds());
    v.extend(input_seeds());
    v.extend(sensor_seeds());
    v.extend(bc_seeds());
    v.extend(frame_seeds());
    v.extend(command_reader_seeds());
    v
}

fn seed(target: &'static str, name: &str, bytes: Vec<u8>) -> Seed {
    (target, name.to_owned(), bytes)
}

// ---------------------------------------------------------------------------------------------
// parcel_read

fn parcel_seeds() -> Vec<Seed> {
    use ReadOp as R;
    let t = "parcel_read";
    let mut out = Vec::new();
    let every_write = vec![
        WriteOp::Token("android.os.IServiceManager".into()),
        WriteOp::I32(-7),
        WriteOp::I64(1 << 40),
        WriteOp::String16("sensorservice".into()),
        WriteOp::NullString16,
        WriteOp::ByteArray(b"bytes\x00\x01".to_vec()),
        WriteOp::I32Array(vec![1, -2, 3]),
        WriteOp::String16Array(vec!["a".into(), "bc".into()]),
        WriteOp::Local(0x1000, 0x2000),
        WriteOp::Handle(3),
        WriteOp::NullBinder,
        WriteOp::Fd,
        WriteOp::Pfd(true),
        WriteOp::Pfd(false),
        WriteOp::Exception(EX_SERVICE_SPECIFIC, "no".into(), 42),
    ];
    let reads = vec![
        R::SetPos(0),
        R::Enforce(1),
        R::I32,
        R::I64,
        R::String16,
        R::Utf8,
        R::ByteArray,
        R::I32Array,
        R::String16Array,
        R::Binder,
        R::BinderStability,
        R::RequiredBinder,
        R::Fd,
        R::NullablePfd,
        R::NullablePfd,
        R::Exception,
        R::Walk,
    ];
    out.push(seed(
        t,
        "built-every-write",
        parcel::encode(&parcel::Input {
            source: Source::Built(every_write),
            reads: reads.clone(),
        }),
    ));
    out.push(seed(
        t,
        "built-exception-none",
        parcel::encode(&parcel::Input {
            source: Source::Built(vec![
                WriteOp::Exception(0, String::new(), 0),
                WriteOp::I32(5),
            ]),
            reads: vec![R::SetPos(0), R::Exception, R::I32],
        }),
    ));

    // A real AIDL-style request written by the crate's writer, as bytes + offsets.
    let mut p = Parcel::new();
    p.write_interface_token("bittube.fuzz.ITest").unwrap();
    p.write_string16("name").unwrap();
    p.write_binder(BinderObject::local(0x5000, 0x6000)).unwrap();
    p.write_binder(BinderObject::handle(7)).unwrap();
    p.write_null_binder().unwrap();
    p.write_byte_array(&[9; 9]).unwrap();
    p.write_string16_array(&["x", "yz"]).unwrap();
    let (data, offs) = (p.data().to_vec(), p.offsets().to_vec());
    let all_reads: Vec<ReadOp> = vec![
        R::Enforce(2),
        R::String16,
        R::Binder,
        R::Binder,
        R::Binder,
        R::ByteArray,
        R::String16Array,
        R::SetPos(0),
        R::U32,
        R::U64,
        R::F32,
        R::F64,
        R::Bool,
        R::Byte,
        R::Char,
        R::Bytes(12),
        R::String16Units,
        R::RequiredString16,
        R::SetPosFar(0),
        R::I32,
        R::Walk,
    ];
    out.push(seed(
        t,
        "bytes-aidl-request",
        parcel::encode(&parcel::Input {
            source: Source::Bytes(data.clone(), offs.clone()),
            reads: all_reads.clone(),
        }),
    ));

    // The same with fd objects, as a received parcel (the harness installs real fds).
    let mut p = Parcel::new();
    p.write_i32(1).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    p.write_dup_fd(std::os::fd::AsFd::as_fd(&null)).unwrap();
    p.write_dup_parcel_file_descriptor(std::os::fd::AsFd::as_fd(&null))
        .unwrap();
    p.write_dup_fd(std::os::fd::AsFd::as_fd(&null)).unwrap();
    let (data, offs) = (p.data().to_vec(), p.offsets().to_vec());
    out.push(seed(
        t,
        "received-fds",
        parcel::encode(&parcel::Input {
            source: Source::Received(data, offs),
            reads: vec![
                R::I32,
                R::DupFd,
                R::Fd,
                R::Fd,
                R::Pfd,
                R::SetPos(4),
                R::Fd,
                R::Walk,
                R::SetPos(28),
                R::Pfd,
                R::DupFd,
            ],
        }),
    ));

    // A reply with a service-specific exception, read as bytes.
    let mut p = Parcel::new();
    p.write_exception(&AidlException::service_specific(3, "bad"))
        .unwrap();
    out.push(seed(
        t,
        "bytes-exception-reply",
        parcel::encode(&parcel::Input {
            source: Source::Bytes(p.data().to_vec(), Vec::new()),
            reads: vec![R::Exception, R::SetPos(0), R::Exception, R::I32],
        }),
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// input_message

fn key() -> KeyEvent {
    KeyEvent {
        device_id: 3,
        source: SOURCE_KEYBOARD,
        display_id: 0,
        action: KEY_ACTION_DOWN,
        flags: 0,
        key_code: 29,
        scan_code: 30,
        meta_state: 0,
        repeat_count: 0,
        policy_flags: 0,
        down_time: 10,
        event_time: 11,
    }
}

fn encoded(m: &InputMessage) -> Vec<u8> {
    let mut buf = [0u8; MAX_MESSAGE_SIZE];
    let n = m.encode(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn messages() -> Vec<(&'static str, InputMessage)> {
    let mut two = MotionEvent::touch(MOTION_ACTION_MOVE, 10.0, 20.0, 100, 200);
    two.pointers.push(Pointer {
        id: 1,
        x: 30.0,
        y: 40.0,
        ..two.pointers[0]
    });
    vec![
        (
            "key",
            InputMessage::Key {
                seq: 1,
                event: key(),
            },
        ),
        (
            "motion-down",
            InputMessage::Motion {
                seq: 2,
                event: MotionEvent::touch(MOTION_ACTION_DOWN, 1.0, 2.0, 100, 100),
            },
        ),
        (
            "motion-two-pointers",
            InputMessage::Motion { seq: 3, event: two },
        ),
        (
            "finished",
            InputMessage::Finished {
                seq: 4,
                handled: true,
                consume_time: 300,
            },
        ),
        (
            "focus",
            InputMessage::Focus {
                seq: 5,
                has_focus: true,
                in_touch_mode: false,
            },
        ),
    ]
}

fn input_seeds() -> Vec<Seed> {
    use input::Op;
    let t = "input_message";
    let mut out = Vec::new();
    for (name, m) in messages() {
        out.push(seed(
            t,
            &format!("decode-{name}"),
            input::encode(&input::Input::Decode(encoded(&m))),
        ));
    }
    let mut ops = vec![Op::ToConsumer(encoded(&InputMessage::Motion {
        seq: 10,
        event: MotionEvent::touch(MOTION_ACTION_DOWN, 0.0, 0.0, 1_000, 1_000),
    }))];
    for i in 1..5i64 {
        ops.push(Op::ToConsumer(encoded(&InputMessage::Motion {
            seq: 10 + i as u32,
            event: MotionEvent::touch(
                MOTION_ACTION_MOVE,
                i as f32,
                i as f32,
                1_000,
                1_000 + i * 4_000_000,
            ),
        })));
    }
    ops.extend([
        Op::Consume(Some(1_000 + 9_000_000)),
        Op::Finish(true),
        Op::ToConsumer(encoded(&InputMessage::Key {
            seq: 20,
            event: key(),
        })),
        Op::ToConsumer(encoded(&InputMessage::Focus {
            seq: 21,
            has_focus: false,
            in_touch_mode: true,
        })),
        Op::Consume(None),
        Op::Finish(true),
        Op::Finish(false),
        Op::FinishSeq(99, true),
        Op::Flush,
        Op::Consume(Some(i64::MAX)),
        Op::ReceiveFinished,
        Op::ToPublisher(encoded(&InputMessage::Finished {
            seq: 20,
            handled: true,
            consume_time: 5,
        })),
        Op::ReceiveFinished,
    ]);
    out.push(seed(
        t,
        "channel-batching-and-finish",
        input::encode(&input::Input::Channel(ops)),
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// sensor_event

fn events_bytes(events: &[SensorEvent]) -> Vec<u8> {
    bytemuck::cast_slice(events).to_vec()
}

fn sensor_seeds() -> Vec<Seed> {
    let t = "sensor_event";
    let mut wake = SensorEvent::new(4, 1, 100, &[0.0, 9.8, 0.1]);
    wake.flags |= WAKE_UP_NEEDS_ACK;
    let batch = events_bytes(&[
        SensorEvent::new(1, 1, 100, &[0.1, 0.2, 9.8]),
        wake,
        SensorEvent::step_counter(6, 101, 1234),
        SensorEvent::flush_complete(1, 102),
    ]);
    let queue = sensor::Input::Queue(vec![
        QueueOp::Send(batch.clone()),
        QueueOp::Read(255),
        QueueOp::DrainAcks,
        QueueOp::Send(batch[..104].to_vec()),
        QueueOp::Send(batch[..50].to_vec()),
        QueueOp::Read(0),
        QueueOp::Read(1),
        QueueOp::SendAcks,
        QueueOp::DrainAcks,
    ]);
    let direct = sensor::Input::Direct {
        slots: 4,
        sealed: true,
        ring: Vec::new(),
        ops: vec![
            DirectOp::Read(8),
            DirectOp::Records(3),
            DirectOp::Read(2),
            DirectOp::Read(8),
            DirectOp::Records(9),
            DirectOp::Read(255),
        ],
    };
    let hostile_ring = sensor::Input::Direct {
        slots: 2,
        sealed: true,
        ring: Vec::new(),
        ops: vec![
            DirectOp::Records(1),
            DirectOp::Poke(3, u32::MAX),
            DirectOp::Read(4),
            DirectOp::Poke(29, 7),
            DirectOp::Read(4),
        ],
    };
    let acks = sensor::Input::Acks(
        true,
        vec![
            1u32.to_ne_bytes().to_vec(),
            [2u32, 3].iter().flat_map(|x| x.to_ne_bytes()).collect(),
            vec![1, 2, 3],
            u32::MAX.to_ne_bytes().to_vec(),
        ],
    );
    vec![
        seed(t, "queue-wakeups-and-bad-packets", sensor::encode(&queue)),
        seed(t, "direct-lapped", sensor::encode(&direct)),
        seed(t, "direct-hostile-stores", sensor::encode(&hostile_ring)),
        seed(t, "service-acks", sensor::encode(&acks)),
        seed(
            t,
            "direct-unsealed",
            sensor::encode(&sensor::Input::Direct {
                slots: 1,
                sealed: false,
                ring: vec![1; 104],
                ops: vec![DirectOp::Read(1)],
            }),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// bc_stream

fn txn(kind: u8, handle: u32, flags: u32, data: &[u8], objs: Vec<Obj>) -> Txn {
    Txn {
        kind,
        handle,
        code: 7,
        flags,
        data: data.to_vec(),
        objs,
        extra_offsets: Vec::new(),
        sg_raw: false,
        sg: 0,
    }
}

fn binder_obj(ptr: u64) -> Obj {
    Obj::Binder {
        strong: true,
        ptr,
        cookie: ptr + 1,
        flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
    }
}

/// Scatter-gather objects: a PTR root, a PTR child pointing into it, an FDA of 2 fds in a
/// third PTR that holds the fd numbers, and a plain FD.
fn sg_objects() -> Vec<Obj> {
    vec![
        Obj::Ptr {
            flags: 0,
            parent: 0,
            parent_offset: 0,
            len_raw: false,
            len: 0,
            content: Content::Bytes(vec![0; 24]),
        },
        Obj::Ptr {
            flags: BINDER_BUFFER_FLAG_HAS_PARENT,
            parent: 0,
            parent_offset: 8,
            len_raw: false,
            len: 0,
            content: Content::Bytes(b"child buffer".to_vec()),
        },
        Obj::Ptr {
            flags: 0,
            parent: 0,
            parent_offset: 0,
            len_raw: false,
            len: 0,
            content: Content::Fds(2),
        },
        Obj::Fda {
            num: 2,
            parent: 2,
            parent_offset: 0,
        },
        Obj::Fd { sel: 0, raw: 0 },
    ]
}

fn bc_seeds() -> Vec<Seed> {
    use bc::Op;
    let t = "bc_stream";
    let publish = Op::Write(
        0,
        256,
        vec![
            Cmd::Looper(0),
            Cmd::Txn(txn(
                0,
                0,
                TF_ACCEPT_FDS,
                b"publish",
                vec![binder_obj(0x1000), binder_obj(0x2000)],
            )),
        ],
    );
    let lookup = Op::Write(1, 1024, vec![Cmd::Txn(txn(0, 0, 0, b"lookup", Vec::new()))]);
    let mut ops = vec![
        publish,
        Op::Read(0),
        lookup,
        Op::Read(1),
        Op::Read(1),
        Op::Read(0),
    ];
    // Proc 1 calls proc 0's nodes through handles 1 and 2 with every object kind.
    ops.push(Op::Write(
        1,
        256,
        vec![
            Cmd::Ref(1, 1),
            Cmd::Txn(txn(2, 1, TF_ACCEPT_FDS, b"sg call", sg_objects())),
            Cmd::Txn(txn(
                0,
                2,
                TF_ONE_WAY | TF_ACCEPT_FDS,
                b"oneway",
                vec![
                    Obj::Handle {
                        strong: true,
                        handle: 1,
                    },
                    Obj::Fd { sel: 1, raw: 0 },
                ],
            )),
            Cmd::Death(false, 1, 0xdead),
        ],
    ));
    ops.push(Op::Write(
        0,
        4096,
        vec![Cmd::Done(false, 0), Cmd::Done(true, 0)],
    ));
    ops.push(Op::Write(
        0,
        4096,
        vec![
            Cmd::Txn(txn(3, 0, 0, b"reply", sg_objects())),
            Cmd::Free(0, 0),
        ],
    ));
    ops.push(Op::Read(1));
    ops.push(Op::Write(
        1,
        4096,
        vec![Cmd::Free(0, 0), Cmd::Free(1, 0), Cmd::Ref(2, 1)],
    ));
    ops.push(Op::Exit(0));
    ops.push(Op::Write(
        1,
        4096,
        vec![Cmd::DeadDone(0, 0), Cmd::Death(true, 1, 0xdead)],
    ));
    ops.push(Op::Read(1));
    let full = bc::encode(&bc::Input { nprocs: 2, ops });

    let three = bc::encode(&bc::Input {
        nprocs: 3,
        ops: vec![
            Op::Write(
                0,
                0,
                vec![Cmd::Txn(txn(
                    0,
                    0,
                    TF_ONE_WAY,
                    b"p0",
                    vec![binder_obj(0x10)],
                ))],
            ),
            Op::Write(
                1,
                0,
                vec![Cmd::Txn(txn(
                    0,
                    0,
                    TF_ONE_WAY,
                    b"p1",
                    vec![binder_obj(0x20)],
                ))],
            ),
            Op::Write(2, 4096, vec![Cmd::Txn(txn(0, 0, 0, b"who", Vec::new()))]),
            Op::Read(2),
            Op::Write(
                2,
                4096,
                vec![
                    Cmd::Txn(txn(
                        0,
                        1,
                        TF_ONE_WAY,
                        b"to p0",
                        vec![Obj::Handle {
                            strong: true,
                            handle: 2,
                        }],
                    )),
                    Cmd::Free(0, 0),
                ],
            ),
            Op::Read(0),
            Op::ThreadExit(0),
            Op::Read(0),
            Op::RawWrite(
                1,
                64,
                [BC_ENTER_LOOPER, BC_EXIT_LOOPER]
                    .iter()
                    .flat_map(|c| c.to_ne_bytes())
                    .collect(),
            ),
        ],
    });
    vec![
        seed(t, "publish-lookup-sg-call-reply-death", full),
        seed(t, "three-procs-oneway", three),
    ]
}

// ---------------------------------------------------------------------------------------------
// shim_frames

fn frame_seeds() -> Vec<Seed> {
    use frames::Op;
    let t = "shim_frames";
    let area = 256 * 1024;
    let mut ops = vec![
        // conn 0: proc A (pid #0), conn 1: its thread; conn 2: proc B (pid #1), conn 3: thread.
        Op::Connect(0, 0),
        Op::Connect(0, 0),
        Op::Connect(1, 0),
        Op::Connect(1, 0),
        Op::Frame(0, 0, Frame::OpenProc(area)),
        Op::Frame(0, 0, Frame::MapDone(0x7000_0000)),
        Op::Frame(1, 0, Frame::OpenThread(0, 0)),
        Op::Frame(2, 0, Frame::OpenProc(area)),
        Op::Frame(2, 0, Frame::MapDone(0x7100_0000)),
        Op::Frame(3, 0, Frame::OpenThread(1, 0)),
        Op::Frame(1, 0, Frame::Ioctl(0, Vec::new())),
        Op::Frame(1, 0, Frame::Ioctl(2, vec![0; 4])),
        Op::Frame(
            1,
            0,
            Frame::WriteRead {
                nonblock: true,
                read: 0,
                cmds: vec![Cmd::Looper(0)],
            },
        ),
    ];
    ops.push(Op::Frame(
        3,
        0,
        Frame::WriteRead {
            nonblock: true,
            read: 4096,
            cmds: vec![Cmd::Txn(txn(2, 0, TF_ACCEPT_FDS, b"call with objects", {
                let mut o = vec![binder_obj(0x3000)];
                o.extend(sg_objects());
                o
            }))],
        },
    ));
    ops.push(Op::Frame(
        1,
        0,
        Frame::WriteRead {
            nonblock: true,
            read: 4096,
            cmds: Vec::new(),
        },
    ));
    ops.push(Op::Frame(
        1,
        0,
        Frame::WriteRead {
            nonblock: true,
            read: 4096,
            cmds: vec![
                Cmd::Done(false, 0),
                Cmd::Done(true, 0),
                Cmd::Txn(txn(
                    1,
                    0,
                    0,
                    b"reply",
                    vec![Obj::Handle {
                        strong: true,
                        handle: 1,
                    }],
                )),
                Cmd::Free(0, 0),
            ],
        },
    ));
    ops.push(Op::Frame(
        3,
        7,
        Frame::WriteRead {
            nonblock: true,
            read: 4096,
            cmds: vec![Cmd::Death(false, 1, 9)],
        },
    ));
    ops.push(Op::Frame(
        3,
        0,
        Frame::WriteRead {
            nonblock: false,
            read: 4096,
            cmds: vec![Cmd::Free(1, 0)],
        },
    ));
    ops.push(Op::Connect(2, 1));
    ops.push(Op::Frame(4, 0, Frame::State));
    ops.push(Op::Frame(
        2,
        0,
        Frame::Ioctl(1, 4u32.to_ne_bytes().to_vec()),
    ));
    ops.push(Op::Close(0));
    ops.push(Op::Frame(
        3,
        0,
        Frame::WriteRead {
            nonblock: true,
            read: 4096,
            cmds: vec![Cmd::DeadDone(0, 0)],
        },
    ));
    ops.push(Op::Raw(3, 0, vec![16, 0, 0, 0, 7, 0, 0]));
    ops.push(Op::Close(3));
    let full = frames::encode(&ops);
    let raw = frames::encode(&[
        Op::Connect(0, 0),
        Op::Frame(0, 3, Frame::OpenProc(4096)),
        Op::Raw(
            0,
            2,
            vec![8, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3],
        ),
        Op::Frame(0, 0, Frame::Any(K_STATE_KIND, 1, vec![1, 2, 3])),
        Op::Close(0),
    ]);
    vec![
        seed(t, "two-procs-call-reply-death", full),
        seed(t, "partial-and-raw-frames", raw),
    ]
}

const K_STATE_KIND: u32 = 9;

// ---------------------------------------------------------------------------------------------
// command_reader

fn command_reader_seeds() -> Vec<Seed> {
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER)
        .cmd_with(BC_FREE_BUFFER, &0x1234u64)
        .cmd_with(BC_ACQUIRE, &1u32)
        .cmd_with(BC_TRANSACTION, &BinderTransactionData::default())
        .cmd_with(BR_INCREFS, &BinderPtrCookie { ptr: 1, cookie: 2 });
    let stream = w.into_bytes();
    let t = Txn {
        kind: 0,
        handle: 0,
        code: 0,
        flags: 0,
        data: b"head".to_vec(),
        objs: sg_objects(),
        extra_offsets: vec![3, u64::MAX],
        sg_raw: false,
        sg: 0,
    };
    let l = bc::layout(&t, &[3, 4, 5]);
    let offs: Vec<u8> = l.offsets.iter().flat_map(|o| o.to_ne_bytes()).collect();
    let total = l.data.len() + offs.len();
    let mut objects = vec![((l.data.len() * 255).div_ceil(total)) as u8];
    objects.extend_from_slice(&l.data);
    objects.extend_from_slice(&offs);
    let mut s = vec![255u8];
    s.extend_from_slice(&stream);
    vec![
        seed("command_reader", "bc-stream", s),
        seed("command_reader", "objects-and-offsets", objects),
    ]
}
