//! The seeded scenario generator: a scenario is a list of steps, each one call on one binder
//! thread of one binder process, all of them non-blocking, run strictly one after another. The
//! controller and every worker derive the same scenario from the seed, so only step numbers
//! travel between them.
//!
//! Things a step refers to that only the driver decides (handles, buffer addresses, node
//! requests, dead cookies) are symbolic ([`HandleRef`], [`BufRef`], ...) and resolved by the
//! worker from what its process has received so far.

use bittube::binder_ipc::uapi::*;

/// Binder processes a scenario may have (each in its own worker OS process).
pub const MAX_PROCS: usize = 3;
/// Binder threads (OS threads) per process.
pub const THREADS: usize = 3;
/// Files each worker holds, sent as FD / FDA objects.
pub const FILES: usize = 3;
/// Nodes (local binder objects) each process may send.
pub const NODES: u64 = 3;

/// splitmix64: small, fast, and the same on every platform and Rust version.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// The next 64 bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` %.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The `binder` (ptr) of node `node` of process `proc`; its cookie is [`node_cookie`].
pub fn node_ptr(proc: usize, node: u64) -> u64 {
    0x1000 * (proc as u64 + 1) + 0x10 * node
}

/// The cookie of a node.
pub fn node_cookie(proc: usize, node: u64) -> u64 {
    node_ptr(proc, node) | 0xC0_0000
}

/// A scenario: its processes' set-up and its steps.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The seed it was made from.
    pub seed: u64,
    /// Set-up of each process; process 0 is the context manager.
    pub procs: Vec<ProcSetup>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// How a process starts.
#[derive(Clone, Copy, Debug)]
pub struct ProcSetup {
    /// `BINDER_SET_MAX_THREADS`.
    pub max_threads: u32,
    /// `BINDER_ENABLE_ONEWAY_SPAM_DETECTION`.
    pub spam_detection: bool,
    /// Flags of the context manager node (process 0 only).
    pub mgr_flags: u32,
}

/// One call on one thread.
#[derive(Clone, Debug)]
pub struct Step {
    /// The process.
    pub proc: usize,
    /// The thread of that process.
    pub thread: usize,
    /// What it does.
    pub op: Op,
}

/// A step's call.
#[derive(Clone, Debug)]
pub enum Op {
    /// `BINDER_WRITE_READ` of these commands with a read buffer of `read` bytes (0: none).
    WriteRead {
        /// The commands.
        cmds: Vec<Cmd>,
        /// Read size.
        read: usize,
    },
    /// `BINDER_THREAD_EXIT`.
    ThreadExit,
    /// The binder process ends (its device is closed and unmapped).
    Exit,
}

/// A handle, named by how the process knows it.
#[derive(Clone, Copy, Debug)]
pub enum HandleRef {
    /// Handle 0, the context manager.
    Zero,
    /// The k-th handle received (counted from the latest), or an invalid one if none.
    Learned(u8),
    /// A handle nobody holds.
    Invalid,
}

/// A received buffer, for BC_FREE_BUFFER.
#[derive(Clone, Copy, Debug)]
pub enum BufRef {
    /// The k-th buffer received (counted from the latest).
    Received(u8),
    /// An address that is not a buffer.
    Bogus,
}

/// One BC_ command.
#[derive(Clone, Debug)]
pub enum Cmd {
    /// BC_TRANSACTION(_SG) or BC_REPLY(_SG).
    Txn(Txn),
    /// BC_FREE_BUFFER.
    Free(BufRef),
    /// BC_INCREFS / BC_ACQUIRE / BC_RELEASE / BC_DECREFS.
    Ref(u32, HandleRef),
    /// BC_INCREFS_DONE / BC_ACQUIRE_DONE for the oldest unanswered BR_INCREFS / BR_ACQUIRE
    /// (a made-up node when there is none).
    NodeDone(u32),
    /// BC_REQUEST_DEATH_NOTIFICATION / BC_CLEAR_DEATH_NOTIFICATION.
    Death(u32, HandleRef, u64),
    /// BC_DEAD_BINDER_DONE for the oldest unanswered BR_DEAD_BINDER (a made-up cookie when
    /// there is none).
    DeadDone,
    /// BC_ENTER_LOOPER / BC_REGISTER_LOOPER / BC_EXIT_LOOPER.
    Looper(u32),
    /// A command code the driver does not know.
    Unknown(u32),
}

/// A transaction or reply.
#[derive(Clone, Debug)]
pub struct Txn {
    /// BC_REPLY instead of BC_TRANSACTION.
    pub reply: bool,
    /// Target (transactions only).
    pub target: HandleRef,
    /// Code.
    pub code: u32,
    /// TF_ flags.
    pub flags: u32,
    /// Sent as the _SG variant.
    pub sg: bool,
    /// Plain bytes before the first object.
    pub prefix: usize,
    /// The objects, one after the other.
    pub objs: Vec<Obj>,
    /// Plain bytes after the objects.
    pub suffix: usize,
    /// What is wrong with it, if anything.
    pub bad: Option<Bad>,
}

/// An object in a transaction.
#[derive(Clone, Copy, Debug)]
pub enum Obj {
    /// BINDER / WEAK_BINDER of one of the sender's nodes.
    Binder {
        /// WEAK_BINDER.
        weak: bool,
        /// Which node.
        node: u64,
        /// FLAT_BINDER_FLAG_ACCEPTS_FDS.
        accept_fds: bool,
    },
    /// HANDLE / WEAK_HANDLE.
    Handle {
        /// WEAK_HANDLE.
        weak: bool,
        /// Which handle.
        h: HandleRef,
    },
    /// FD of one of the worker's files.
    Fd(u8),
    /// FD that is not open.
    BadFd,
    /// PTR buffer of `len` bytes; with a parent (object index, offset in it) it is fixed up.
    Ptr {
        /// Length.
        len: u64,
        /// Parent object index and the offset of the pointer in the parent.
        parent: Option<(u64, u64)>,
    },
    /// FDA of `n` of the worker's files in parent PTR `parent` at `off`.
    Fda {
        /// Number of fds.
        n: u64,
        /// Parent object index.
        parent: u64,
        /// Offset in the parent.
        off: u64,
    },
}

/// Malformed transactions.
#[derive(Clone, Copy, Debug)]
pub enum Bad {
    /// offsets_size not a multiple of 8.
    OffsetsNot8,
    /// An object offset not 4-aligned.
    MisalignedOffset,
    /// An object offset past the end of the data.
    OffsetPastEnd,
    /// The first offset repeated (overlapping objects).
    Overlap,
    /// An object of an unknown type.
    UnknownType,
    /// data.ptr.buffer names unmapped memory.
    UnmappedData,
    /// data.ptr.offsets names unmapped memory.
    UnmappedOffsets,
    /// data_size larger than the whole buffer area.
    HugeData,
    /// buffers_size 8 bytes short of the PTR buffers (SG only).
    BuffersTooSmall,
    /// A PTR of length `u64::MAX` (issue 10).
    PtrLenMax,
    /// A child PTR whose parent offset overflows (issue 10).
    ChildOffsetOverflow,
    /// An FDA whose num_fds * 4 overflows (issue 10).
    FdaCountOverflow,
    /// An FDA whose parent_offset overflows (issue 10).
    FdaOffsetOverflow,
}

const BADS: [Bad; 13] = [
    Bad::OffsetsNot8,
    Bad::MisalignedOffset,
    Bad::OffsetPastEnd,
    Bad::Overlap,
    Bad::UnknownType,
    Bad::UnmappedData,
    Bad::UnmappedOffsets,
    Bad::HugeData,
    Bad::BuffersTooSmall,
    Bad::PtrLenMax,
    Bad::ChildOffsetOverflow,
    Bad::FdaCountOverflow,
    Bad::FdaOffsetOverflow,
];

/// Read sizes: mostly roomy, some that cut a return stream.
const READS: [usize; 12] = [8192, 8192, 8192, 8192, 8192, 4, 8, 24, 48, 76, 80, 160];

struct Gen {
    rng: Rng,
    procs: usize,
    alive: Vec<bool>,
    steps: Vec<Step>,
}

/// Makes the scenario of `seed`.
pub fn scenario(seed: u64) -> Scenario {
    let mut rng = Rng::new(seed);
    let procs = 2 + rng.below(2) as usize;
    let setup = (0..procs)
        .map(|_| ProcSetup {
            max_threads: rng.pick(&[0, 0, 1, 2]),
            spam_detection: rng.pct(25),
            mgr_flags: if rng.pct(70) {
                FLAT_BINDER_FLAG_ACCEPTS_FDS
            } else {
                0
            },
        })
        .collect();
    let mut g = Gen {
        rng,
        procs,
        alive: vec![true; procs],
        steps: Vec::new(),
    };
    g.loopers();
    if g.rng.pct(85) {
        g.bootstrap();
    }
    let intents = 8 + g.rng.below(24);
    for _ in 0..intents {
        g.intent();
    }
    Scenario {
        seed,
        procs: setup,
        steps: g.steps,
    }
}

impl Gen {
    fn push(&mut self, proc: usize, thread: usize, op: Op) {
        self.steps.push(Step { proc, thread, op });
    }

    fn wr(&mut self, proc: usize, thread: usize, cmds: Vec<Cmd>, read: usize) {
        self.push(proc, thread, Op::WriteRead { cmds, read });
    }

    fn read_size(&mut self) -> usize {
        self.rng.pick(&READS)
    }

    fn alive_proc(&mut self) -> usize {
        loop {
            let p = self.rng.below(self.procs as u64) as usize;
            if self.alive[p] {
                return p;
            }
        }
    }

    fn thread(&mut self) -> usize {
        // Thread 0 does most of the work, so that calls pile up on one stack.
        self.rng.pick(&[0, 0, 0, 1, 1, 2])
    }

    fn handle(&mut self) -> HandleRef {
        match self.rng.below(10) {
            0..=1 => HandleRef::Zero,
            2..=8 => HandleRef::Learned(self.rng.below(3) as u8),
            _ => HandleRef::Invalid,
        }
    }

    /// Threads enter the looper (as libbinder's do before reading), most of them.
    fn loopers(&mut self) {
        for p in 0..self.procs {
            for th in 0..THREADS {
                self.looper(p, th);
            }
        }
    }

    fn looper(&mut self, p: usize, th: usize) {
        if th == 0 || self.rng.pct(90) {
            let c = if th == 0 || self.rng.pct(60) {
                BC_ENTER_LOOPER
            } else {
                BC_REGISTER_LOOPER
            };
            self.wr(p, th, vec![Cmd::Looper(c)], 0);
        }
    }

    /// Every other process hands one of its nodes to the manager (which keeps a reference),
    /// then asks it for a service and gets a handle to another client's node and one to a
    /// node of the manager; threads enter the looper.
    fn bootstrap(&mut self) {
        for p in 1..self.procs {
            let node = self.rng.below(NODES);
            let mut t = self.plain_txn(false);
            t.target = HandleRef::Zero;
            t.flags = TF_ACCEPT_FDS;
            t.objs = vec![Obj::Binder {
                weak: false,
                node,
                accept_fds: self.rng.pct(70),
            }];
            self.wr(p, 0, vec![Cmd::Txn(t)], 8192);
            self.wr(0, 0, vec![], 8192);
            let reply = self.plain_txn(true);
            self.wr(
                0,
                0,
                vec![
                    Cmd::Ref(BC_ACQUIRE, HandleRef::Learned(0)),
                    Cmd::Txn(reply),
                    Cmd::Free(BufRef::Received(0)),
                ],
                8192,
            );
            self.wr(
                p,
                0,
                vec![
                    Cmd::NodeDone(BC_INCREFS_DONE),
                    Cmd::NodeDone(BC_ACQUIRE_DONE),
                ],
                8192,
            );
        }
        for p in 1..self.procs {
            let mut t = self.plain_txn(false);
            t.target = HandleRef::Zero;
            t.flags = TF_ACCEPT_FDS;
            self.wr(p, 0, vec![Cmd::Txn(t)], 8192);
            self.wr(0, 0, vec![], 8192);
            let mut reply = self.plain_txn(true);
            reply.flags = 0;
            if self.procs == 3 {
                // The manager's handles, latest first: P2's node, P1's node.
                let other = if p == 1 { 0 } else { 1 };
                reply.objs.push(Obj::Handle {
                    weak: false,
                    h: HandleRef::Learned(other),
                });
            }
            reply.objs.push(Obj::Binder {
                weak: false,
                node: 1,
                accept_fds: true,
            });
            self.wr(
                0,
                0,
                vec![Cmd::Txn(reply), Cmd::Free(BufRef::Received(0))],
                8192,
            );
            self.wr(
                p,
                0,
                vec![Cmd::Ref(BC_ACQUIRE, HandleRef::Learned(0))],
                8192,
            );
            self.wr(
                0,
                0,
                vec![
                    Cmd::NodeDone(BC_INCREFS_DONE),
                    Cmd::NodeDone(BC_ACQUIRE_DONE),
                ],
                8192,
            );
        }
    }

    fn plain_txn(&mut self, reply: bool) -> Txn {
        Txn {
            reply,
            target: if reply {
                HandleRef::Zero
            } else {
                self.handle()
            },
            code: self.rng.below(4) as u32 + 1,
            flags: self
                .rng
                .pick(&[0, 0, TF_ACCEPT_FDS, TF_ONE_WAY, TF_ONE_WAY | TF_ACCEPT_FDS]),
            sg: false,
            prefix: self.rng.pick(&[0, 4, 8, 8, 16]),
            objs: Vec::new(),
            suffix: self.rng.pick(&[0, 0, 3, 8, 40]),
            bad: None,
        }
    }

    fn objects(&mut self, t: &mut Txn) {
        let n = self.rng.pick(&[0, 0, 1, 1, 2, 3, 4]);
        let mut ptrs: Vec<u64> = Vec::new();
        for i in 0..n as u64 {
            let o = match self.rng.below(12) {
                0..=2 => Obj::Binder {
                    weak: self.rng.pct(20),
                    node: self.rng.below(NODES),
                    accept_fds: self.rng.pct(60),
                },
                3..=4 => Obj::Handle {
                    weak: self.rng.pct(20),
                    h: self.handle(),
                },
                5..=6 => Obj::Fd(self.rng.below(FILES as u64) as u8),
                7 if self.rng.pct(30) => Obj::BadFd,
                7..=9 => {
                    let len = self.rng.pick(&[0, 8, 16, 24, 32, 13]);
                    let parent = match ptrs.last() {
                        Some(&p) if self.rng.pct(50) => Some((p, self.rng.pick(&[0, 8, 16]))),
                        _ => None,
                    };
                    Obj::Ptr { len, parent }
                }
                _ => match ptrs.last() {
                    Some(&p) => Obj::Fda {
                        n: self.rng.below(3),
                        parent: p,
                        off: self.rng.pick(&[0, 4, 8, 16]),
                    },
                    None => Obj::Fd(0),
                },
            };
            if matches!(o, Obj::Ptr { .. }) {
                ptrs.push(i);
                t.sg = true;
            }
            if matches!(o, Obj::Fda { .. }) {
                t.sg = true;
            }
            t.objs.push(o);
        }
        if self.rng.pct(10) {
            t.sg = true;
        }
    }

    fn call(&mut self) {
        let p = self.alive_proc();
        let th = self.thread();
        let mut t = self.plain_txn(false);
        self.objects(&mut t);
        let mut cmds = Vec::new();
        if self.rng.pct(20) {
            cmds.push(Cmd::Free(BufRef::Received(0)));
        }
        cmds.push(Cmd::Txn(t));
        let read = self.read_size();
        let read = if self.rng.pct(85) { read } else { 0 };
        self.wr(p, th, cmds, read);
    }

    /// A read (maybe entering the looper first), then often a reply and a free.
    fn serve(&mut self) {
        let p = self.alive_proc();
        let th = self.thread();
        let mut cmds = Vec::new();
        if self.rng.pct(40) {
            cmds.push(Cmd::Looper(self.rng.pick(&[
                BC_ENTER_LOOPER,
                BC_ENTER_LOOPER,
                BC_REGISTER_LOOPER,
            ])));
        }
        let read = self.read_size();
        self.wr(p, th, cmds, read);
        if self.rng.pct(60) {
            let mut r = self.plain_txn(true);
            r.flags &= !TF_ONE_WAY;
            self.objects(&mut r);
            let mut cmds = vec![Cmd::Txn(r)];
            if self.rng.pct(80) {
                cmds.push(Cmd::Free(BufRef::Received(0)));
            }
            if self.rng.pct(40) {
                cmds.push(Cmd::NodeDone(BC_INCREFS_DONE));
                cmds.push(Cmd::NodeDone(BC_ACQUIRE_DONE));
            }
            let read = self.read_size();
            self.wr(p, th, cmds, read);
        }
    }

    /// A sync call from `a` to some handle, served on `b` by a call back (handle chosen
    /// symbolically, often `a`'s node), which `a`'s calling thread gets on its stack; replies
    /// unwind both.
    fn nested(&mut self) {
        let a = self.alive_proc();
        let b = self.alive_proc();
        let (ta, tb) = (self.thread(), self.thread());
        let mut t = self.plain_txn(false);
        t.flags &= !TF_ONE_WAY;
        t.target = if a == 0 {
            HandleRef::Learned(self.rng.below(2) as u8)
        } else {
            HandleRef::Zero
        };
        self.wr(a, ta, vec![Cmd::Txn(t)], 8192);
        self.wr(b, tb, vec![], 8192);
        let mut back = self.plain_txn(false);
        back.flags &= !TF_ONE_WAY;
        back.target = HandleRef::Learned(self.rng.below(3) as u8);
        self.objects(&mut back);
        self.wr(b, tb, vec![Cmd::Txn(back)], 8192);
        self.wr(a, ta, vec![], 8192);
        for (p, th) in [(a, ta), (b, tb), (a, ta)] {
            let mut r = self.plain_txn(true);
            r.flags = 0;
            if self.rng.pct(30) {
                self.objects(&mut r);
            }
            let read = self.read_size();
            self.wr(
                p,
                th,
                vec![Cmd::Txn(r), Cmd::Free(BufRef::Received(0))],
                read,
            );
        }
    }

    fn refcounts(&mut self) {
        let p = self.alive_proc();
        let th = self.thread();
        let n = 1 + self.rng.below(3);
        let mut cmds = Vec::new();
        for _ in 0..n {
            cmds.push(match self.rng.below(6) {
                0..=3 => Cmd::Ref(
                    self.rng
                        .pick(&[BC_INCREFS, BC_ACQUIRE, BC_RELEASE, BC_DECREFS]),
                    self.handle(),
                ),
                _ => Cmd::NodeDone(self.rng.pick(&[BC_INCREFS_DONE, BC_ACQUIRE_DONE])),
            });
        }
        let read = if self.rng.pct(50) { 0 } else { 8192 };
        self.wr(p, th, cmds, read);
    }

    fn death(&mut self) {
        let p = self.alive_proc();
        let th = self.thread();
        let cookie = 0xD0 + self.rng.below(3);
        let h = if self.rng.pct(85) {
            HandleRef::Learned(self.rng.below(2) as u8)
        } else {
            self.handle()
        };
        let cmd = match self.rng.below(10) {
            0..=4 => Cmd::Death(BC_REQUEST_DEATH_NOTIFICATION, h, cookie),
            5..=7 => Cmd::Death(BC_CLEAR_DEATH_NOTIFICATION, h, cookie),
            _ => Cmd::DeadDone,
        };
        let read = if self.rng.pct(30) { 0 } else { 8192 };
        self.wr(p, th, vec![cmd], read);
    }

    /// Several oneway calls in one write, big enough to run out of async space.
    fn flood(&mut self) {
        let p = self.alive_proc();
        let th = self.thread();
        let n = 2 + self.rng.below(6);
        let size = self.rng.pick(&[64, 4096, 60_000, 130_000]);
        let target = self.handle();
        let cmds = (0..n)
            .map(|_| {
                Cmd::Txn(Txn {
                    reply: false,
                    target,
                    code: 9,
                    flags: TF_ONE_WAY,
                    sg: false,
                    prefix: 8,
                    objs: Vec::new(),
                    suffix: size,
                    bad: None,
                })
            })
            .collect();
        self.wr(p, th, cmds, 8192);
    }

    fn malformed(&mut self) {
        let p = self.alive_proc();
        let th = self.thread();
        let bad = self.rng.pick(&BADS);
        let reply = self.rng.pct(15);
        let mut t = self.plain_txn(reply);
        t.flags &= !TF_ONE_WAY;
        t.objs = vec![Obj::Fd(0)];
        if matches!(
            bad,
            Bad::BuffersTooSmall
                | Bad::PtrLenMax
                | Bad::ChildOffsetOverflow
                | Bad::FdaCountOverflow
                | Bad::FdaOffsetOverflow
        ) {
            t.sg = true;
            t.objs = vec![
                Obj::Ptr {
                    len: 32,
                    parent: None,
                },
                Obj::Ptr {
                    len: 16,
                    parent: Some((0, 8)),
                },
                Obj::Fda {
                    n: 1,
                    parent: 0,
                    off: 16,
                },
            ];
            t.prefix = 8;
        }
        t.bad = Some(bad);
        self.wr(p, th, vec![Cmd::Txn(t)], 8192);
    }

    fn intent(&mut self) {
        match self.rng.below(100) {
            0..=17 => self.call(),
            18..=24 => self.nested(),
            25..=49 => self.serve(),
            50..=57 => self.refcounts(),
            58..=67 => self.death(),
            68..=71 => self.flood(),
            72..=79 => self.malformed(),
            80..=83 => {
                let p = self.alive_proc();
                let th = self.thread();
                let c = self
                    .rng
                    .pick(&[BC_EXIT_LOOPER, BC_REGISTER_LOOPER, 0x4004_6399]);
                let cmd = if c == 0x4004_6399 {
                    Cmd::Unknown(c)
                } else {
                    Cmd::Looper(c)
                };
                let read = self.read_size();
                self.wr(p, th, vec![cmd], read);
            }
            84..=86 => {
                let p = self.alive_proc();
                let th = self.thread();
                self.push(p, th, Op::ThreadExit);
                if self.rng.pct(80) {
                    self.looper(p, th);
                }
            }
            87..=89 => {
                let p = self.alive_proc();
                let bogus = if self.rng.pct(50) {
                    BufRef::Bogus
                } else {
                    BufRef::Received(self.rng.below(3) as u8)
                };
                let th = self.thread();
                self.wr(p, th, vec![Cmd::Free(bogus)], 8192);
            }
            90..=92 if self.alive.iter().filter(|a| **a).count() > 1 => {
                // A process exits; the manager rarely.
                let p = self.alive_proc();
                if p != 0 || self.rng.pct(20) {
                    self.alive[p] = false;
                    self.push(p, 0, Op::Exit);
                }
            }
            _ => {
                // Reads on every live process, so that queued work comes out.
                for p in 0..self.procs {
                    if self.alive[p] {
                        let th = self.thread();
                        self.wr(p, th, vec![], 8192);
                    }
                }
            }
        }
    }
}
