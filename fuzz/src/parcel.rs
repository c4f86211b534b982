//! Input format of the `parcel_read` target: where the parcel comes from, then reads.
//!
//! ```text
//! input   := source read_op*
//! source  := 0 data:blob offsets        Parcel::from_bytes
//!          | 1 data:blob offsets        Parcel::from_received (FD objects get real fds)
//!          | 2 n:u8 write_op{n}         built with the writer, read back, then read_op*
//! offsets := n:u8 (0 k:u16 -> offset 4k | 1 v:u64 -> offset v){n}
//! ```

use crate::bytes::{Reader, Writer};

/// Where the parcel under test comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `Parcel::from_bytes(data, offsets)`.
    Bytes(Vec<u8>, Vec<u64>),
    /// `Parcel::from_received(data, offsets)`, each FD object given a fresh fd first.
    Received(Vec<u8>, Vec<u64>),
    /// A parcel written with these operations.
    Built(Vec<WriteOp>),
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// `write_i32`.
    I32(i32),
    /// `write_i64`.
    I64(i64),
    /// `write_string16` (lossy UTF-8 of the bytes).
    String16(String),
    /// `write_nullable_string16(None)`.
    NullString16,
    /// `write_byte_array`.
    ByteArray(Vec<u8>),
    /// `write_i32_array`.
    I32Array(Vec<i32>),
    /// `write_string16_array`.
    String16Array(Vec<String>),
    /// `write_interface_token`.
    Token(String),
    /// `write_binder` of a local binder (ptr, cookie).
    Local(u64, u64),
    /// `write_binder` of a handle.
    Handle(u32),
    /// `write_null_binder`.
    NullBinder,
    /// `write_fd` of a fresh fd.
    Fd,
    /// `write_nullable_parcel_file_descriptor` (with a fresh fd when true).
    Pfd(bool),
    /// `write_exception` (code, message, service-specific code).
    Exception(i32, String, i32),
    /// `write_bytes` (unaligned raw bytes: breaks the read-back).
    Raw(Vec<u8>),
    /// `set_data_position` (breaks the read-back), below 64 KiB.
    SetPos(u32),
}

/// One read (or a position change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOp {
    /// `read_i32`
    I32,
    /// `read_u32`
    U32,
    /// `read_i64`
    I64,
    /// `read_u64`
    U64,
    /// `read_f32`
    F32,
    /// `read_f64`
    F64,
    /// `read_bool`
    Bool,
    /// `read_byte`
    Byte,
    /// `read_char`
    Char,
    /// `read_bytes(n)`
    Bytes(u16),
    /// `read_string16_units`
    String16Units,
    /// `read_string16`
    String16,
    /// `read_required_string16`
    RequiredString16,
    /// `read_utf8_from_utf16`
    Utf8,
    /// `read_byte_array`
    ByteArray,
    /// `read_i32_array`
    I32Array,
    /// `read_string16_array`
    String16Array,
    /// `enforce_interface` with descriptor number k of [`DESCRIPTORS`]
    Enforce(u8),
    /// `read_binder`
    Binder,
    /// `read_binder_with_stability`
    BinderStability,
    /// `read_required_binder`
    RequiredBinder,
    /// `read_fd`
    Fd,
    /// `read_dup_fd`
    DupFd,
    /// `read_parcel_file_descriptor`
    Pfd,
    /// `read_nullable_parcel_file_descriptor`
    NullablePfd,
    /// `read_exception`
    Exception,
    /// `set_data_position(v)`
    SetPos(u32),
    /// `set_data_position(usize::MAX - v)`
    SetPosFar(u8),
    /// walk `binder_objects()`, `fds()`, `offsets()`
    Walk,
}

/// Descriptors `ReadOp::Enforce` checks against.
pub const DESCRIPTORS: [&str; 3] = ["", "android.os.IServiceManager", "bittube.fuzz.ITest"];

/// A decoded input.
#[derive(Debug, Clone)]
pub struct Input {
    /// The parcel.
    pub source: Source,
    /// The reads, in order.
    pub reads: Vec<ReadOp>,
}

fn offsets(r: &mut Reader<'_>) -> Vec<u64> {
    let n = r.u8();
    (0..n)
        .map(|_| match r.u8() & 1 {
            0 => u64::from(r.u16()) * 4,
            _ => r.u64(),
        })
        .collect()
}

fn string(r: &mut Reader<'_>) -> String {
    String::from_utf8_lossy(r.blob()).into_owned()
}

fn write_op(r: &mut Reader<'_>) -> WriteOp {
    match r.u8() % 16 {
        0 => WriteOp::I32(r.u32() as i32),
        1 => WriteOp::I64(r.u64() as i64),
        2 => WriteOp::String16(string(r)),
        3 => WriteOp::NullString16,
        4 => WriteOp::ByteArray(r.blob().to_vec()),
        5 => WriteOp::I32Array(
            r.blob()
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        6 => {
            let n = r.u8() % 8;
            WriteOp::String16Array((0..n).map(|_| string(r)).collect())
        }
        7 => WriteOp::Token(string(r)),
        8 => WriteOp::Local(r.u64(), r.u64()),
        9 => WriteOp::Handle(r.u32()),
        10 => WriteOp::NullBinder,
        11 => WriteOp::Fd,
        12 => WriteOp::Pfd(r.u8() & 1 == 1),
        13 => WriteOp::Exception(r.u32() as i32, string(r), r.u32() as i32),
        14 => WriteOp::Raw(r.blob().to_vec()),
        // Writes past the end pad the gap: keep positions small (the writer is trusted code).
        _ => WriteOp::SetPos(u32::from(r.u16())),
    }
}

fn read_op(r: &mut Reader<'_>) -> ReadOp {
    use ReadOp::*;
    match r.u8() % 29 {
        0 => I32,
        1 => U32,
        2 => I64,
        3 => U64,
        4 => F32,
        5 => F64,
        6 => Bool,
        7 => Byte,
        8 => Char,
        9 => Bytes(r.u16()),
        10 => String16Units,
        11 => String16,
        12 => RequiredString16,
        13 => Utf8,
        14 => ByteArray,
        15 => I32Array,
        16 => String16Array,
        17 => Enforce(r.u8() % DESCRIPTORS.len() as u8),
        18 => Binder,
        19 => BinderStability,
        20 => RequiredBinder,
        21 => Fd,
        22 => DupFd,
        23 => Pfd,
        24 => NullablePfd,
        25 => Exception,
        26 => SetPos(r.u32()),
        27 => SetPosFar(r.u8()),
        _ => Walk,
    }
}

/// Decodes any bytes.
pub fn decode(data: &[u8]) -> Input {
    let mut r = Reader::new(data);
    let source = match r.u8() % 3 {
        0 => Source::Bytes(r.blob().to_vec(), offsets(&mut r)),
        1 => Source::Received(r.blob().to_vec(), offsets(&mut r)),
        _ => {
            let n = r.u8();
            Source::Built((0..n).map(|_| write_op(&mut r)).collect())
        }
    };
    let mut reads = Vec::new();
    while !r.is_empty() {
        reads.push(read_op(&mut r));
    }
    Input { source, reads }
}

fn put_offsets(w: &mut Writer, offsets: &[u64]) {
    w.u8(offsets.len() as u8);
    for &o in offsets {
        if o % 4 == 0 && o / 4 <= u64::from(u16::MAX) {
            w.u8(0).u16((o / 4) as u16);
        } else {
            w.u8(1).u64(o);
        }
    }
}

fn put_write(w: &mut Writer, op: &WriteOp) {
    match op {
        WriteOp::I32(v) => w.u8(0).u32(*v as u32),
        WriteOp::I64(v) => w.u8(1).u64(*v as u64),
        WriteOp::String16(s) => w.u8(2).blob(s.as_bytes()),
        WriteOp::NullString16 => w.u8(3),
        WriteOp::ByteArray(b) => w.u8(4).blob(b),
        WriteOp::I32Array(v) => {
            let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.u8(5).blob(&b)
        }
        WriteOp::String16Array(v) => {
            w.u8(6).u8(v.len() as u8);
            for s in v {
                w.blob(s.as_bytes());
            }
            w
        }
        WriteOp::Token(s) => w.u8(7).blob(s.as_bytes()),
        WriteOp::Local(p, c) => w.u8(8).u64(*p).u64(*c),
        WriteOp::Handle(h) => w.u8(9).u32(*h),
        WriteOp::NullBinder => w.u8(10),
        WriteOp::Fd => w.u8(11),
        WriteOp::Pfd(some) => w.u8(12).u8(u8::from(*some)),
        WriteOp::Exception(c, m, s) => w.u8(13).u32(*c as u32).blob(m.as_bytes()).u32(*s as u32),
        WriteOp::Raw(b) => w.u8(14).blob(b),
        WriteOp::SetPos(p) => w.u8(15).u16(*p as u16),
    };
}

fn put_read(w: &mut Writer, op: ReadOp) {
    use ReadOp::*;
    let tag = match op {
        I32 => 0,
        U32 => 1,
        I64 => 2,
        U64 => 3,
        F32 => 4,
        F64 => 5,
        Bool => 6,
        Byte => 7,
        Char => 8,
        Bytes(_) => 9,
        String16Units => 10,
        String16 => 11,
        RequiredString16 => 12,
        Utf8 => 13,
        ByteArray => 14,
        I32Array => 15,
        String16Array => 16,
        Enforce(_) => 17,
        Binder => 18,
        BinderStability => 19,
        RequiredBinder => 20,
        Fd => 21,
        DupFd => 22,
        Pfd => 23,
        NullablePfd => 24,
        Exception => 25,
        SetPos(_) => 26,
        SetPosFar(_) => 27,
        Walk => 28,
    };
    w.u8(tag);
    match op {
        Bytes(n) => {
            w.u16(n);
        }
        Enforce(k) | SetPosFar(k) => {
            w.u8(k);
        }
        SetPos(p) => {
            w.u32(p);
        }
        _ => {}
    }
}

/// Encodes an input (the inverse of [`decode`]).
pub fn encode(input: &Input) -> Vec<u8> {
    let mut w = Writer::new();
    match &input.source {
        Source::Bytes(d, o) => {
            w.u8(0).blob(d);
            put_offsets(&mut w, o);
        }
        Source::Received(d, o) => {
            w.u8(1).blob(d);
            put_offsets(&mut w, o);
        }
        Source::Built(ops) => {
            w.u8(2).u8(ops.len() as u8);
            for op in ops {
                put_write(&mut w, op);
            }
        }
    }
    for &op in &input.reads {
        put_read(&mut w, op);
    }
    w.finish()
}
