//! Sensor event and ack parsing: a `SensorEventQueue` reading whatever packets arrive on its
//! tube (and acknowledging wake-up events), a `DirectChannelReader` over a shared file with
//! any contents and any later stores (a hostile or broken writer), and a `SensorService`
//! connection receiving any ack packets from its client.
//!
//! Checked beyond "no panic": with well-formed records only, the direct reader returns them
//! in counter order, and what it took plus what it counts as lost is what was written.
#![no_main]

use bittube::bittube::BitTube;
use bittube::sensor_demo::client::{SensorEventQueue, MAX_RECEIVE_EVENTS};
use bittube::sensor_demo::direct::DirectChannelReader;
use bittube::sensor_demo::event::{SensorEvent, EVENT_SIZE};
use bittube::sensor_demo::sensors::ACCELEROMETER_WAKE_UP;
use bittube::sensor_demo::service::SensorService;
use bittube_fuzz::sensor::{decode, DirectOp, Input, QueueOp};
use libfuzzer_sys::fuzz_target;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Input::Queue(ops) => queue(&ops),
        Input::Direct {
            slots,
            sealed,
            ring,
            ops,
        } => direct(slots as usize, sealed, &ring, &ops),
        Input::Acks(enable, packets) => acks(enable, &packets),
    }
});

fn queue(ops: &[QueueOp]) {
    let (service, client) = BitTube::new().unwrap().into_ends().unwrap();
    let mut queue = SensorEventQueue::new(client);
    let mut buf = vec![SensorEvent::new(0, 0, 0, &[]); MAX_RECEIVE_EVENTS];
    for op in ops {
        match op {
            QueueOp::Send(p) => {
                let _ = service.send_batch(p);
            }
            QueueOp::Read(n) => {
                let n = (*n as usize % MAX_RECEIVE_EVENTS) + 1;
                if let Ok(got) = queue.read(&mut buf[..n]) {
                    for e in &buf[..got] {
                        let _ = (e.flushed_sensor(), e.steps(), e.needs_ack(), e.is_meta());
                    }
                }
            }
            QueueOp::DrainAcks => {
                let mut acks = [0u32; 64];
                while service.recv_batch(&mut acks).is_ok() {}
            }
            QueueOp::SendAcks => {
                let _ = queue.send_acks();
            }
        }
    }
    let _ = (queue.stats(), queue.pending_acks());
}

fn ring_file(slots: usize, sealed: bool, ring: &[u8]) -> OwnedFd {
    let fd = memfd_create(
        c"fuzz-ring",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .unwrap();
    let len = slots * EVENT_SIZE;
    nix::unistd::ftruncate(&fd, len as i64).unwrap();
    let n = ring.len().min(len);
    nix::sys::uio::pwrite(&fd, &ring[..n], 0).unwrap();
    if sealed {
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW),
        )
        .unwrap();
    }
    fd
}

fn direct(slots: usize, sealed: bool, ring: &[u8], ops: &[DirectOp]) {
    let fd = ring_file(slots, sealed, ring);
    let Ok(mut reader) = DirectChannelReader::new(fd.try_clone().unwrap()) else {
        return;
    };
    assert_eq!(reader.slots(), slots);
    let words = slots * EVENT_SIZE / 4;
    // Well-formed only: nothing but zeros at first, no stray stores.
    let mut clean = ring.iter().all(|&b| b == 0);
    let mut written: u32 = 0;
    let mut taken = Vec::new();
    for op in ops {
        match *op {
            DirectOp::Read(max) => {
                let before = taken.len();
                let n = reader.read(&mut taken, max as usize);
                assert!(n <= max as usize && taken.len() == before + n);
            }
            DirectOp::Poke(word, value) => {
                clean = false;
                let at = (word as usize % words) * 4;
                nix::sys::uio::pwrite(&fd, &value.to_ne_bytes(), at as i64).unwrap();
            }
            DirectOp::Records(n) => {
                for _ in 0..n {
                    written += 1;
                    let mut e = SensorEvent::new(1, 1, i64::from(written), &[written as f32]);
                    e.reserved0 = written as i32;
                    let at = ((written - 1) as usize % slots) * EVENT_SIZE;
                    nix::sys::uio::pwrite(&fd, bytemuck::bytes_of(&e), at as i64).unwrap();
                }
            }
        }
    }
    reader.read(&mut taken, usize::MAX);
    if clean {
        let counters: Vec<i32> = taken.iter().map(|e| e.reserved0).collect();
        assert!(
            counters.windows(2).all(|w| w[0] < w[1]),
            "out of order: {counters:?}"
        );
        assert_eq!(reader.last_counter(), written);
        assert_eq!(taken.len() as u64 + reader.lost(), u64::from(written));
    }
}

fn service() -> &'static SensorService {
    static SERVICE: OnceLock<SensorService> = OnceLock::new();
    SERVICE.get_or_init(|| SensorService::start().expect("sensor service"))
}

fn acks(enable: bool, packets: &[Vec<u8>]) {
    let svc = service();
    let (conn, client) = svc.create_connection().unwrap();
    if enable {
        svc.enable(
            conn,
            ACCELEROMETER_WAKE_UP,
            Duration::from_millis(1),
            Duration::ZERO,
        )
        .unwrap();
    }
    for p in packets {
        let _ = client.send_batch(p);
    }
    let _ = svc.connection_stats(conn);
    let _ = svc.destroy(conn);
}
