//! A BitTube handed out through binder, across three processes.
//!
//! The parent starts the driver shim and the service manager (the context manager); it then
//! starts a *service* process, which registers `bittube.example.events`, and a *client*
//! process, which looks the service up (waiting for it), asks it for an event stream, gets
//! the tube's travelling end in the reply (a `BINDER_TYPE_FD` object), reads the events in
//! order and acknowledges each packet on the same tube.
//!
//! ```sh
//! cargo run --release --example tube_over_binder -- [--events N] [--batch B]
//! ```

use bittube::binder_ipc::parcel::Parcel;
use bittube::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use bittube::binder_ipc::service_manager::{default_policy, ServiceManager, ServiceManagerClient};
use bittube::binder_ipc::shim::ENV_SOCKET;
use bittube::binder_ipc::tube::{read_tube, write_tube, EventReceiver, EventSender};
use bittube::bittube::{BitTube, TubeError};
use bytemuck::{Pod, Zeroable};
use std::process::{Command, ExitCode};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const NAME: &str = "bittube.example.events";
const OPEN_STREAM: u32 = 1;

/// A 104-byte event, the size of Android's `ASensorEvent`.
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct Event {
    seq: u64,
    timestamp_ns: i64,
    values: [f32; 22],
}

fn now_ns() -> i64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() * 1_000_000_000 + t.tv_nsec()
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The service: OPEN_STREAM(count u64, batch u32) answers with a tube end and streams.
struct EventService {
    done: Mutex<mpsc::Sender<(u64, u64)>>,
}

impl Service for EventService {
    fn descriptor(&self) -> &str {
        "bittube.example.IEvents"
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        _: &CallContext,
    ) -> Result<(), BinderError> {
        if code != OPEN_STREAM {
            return Err(BinderError::UnknownTransaction(code));
        }
        let count = data.read_u64()?;
        let batch = data.read_u32()?.clamp(1, 39) as usize;
        let mut tube = BitTube::with_buffer_size(100 * 1024)
            .map_err(|e| BinderError::BadValue(e.to_string()))?;
        write_tube(reply, &mut tube)?;
        let done = self
            .done
            .lock()
            .map_err(|_| BinderError::BadValue("poisoned".into()))?
            .clone();
        std::thread::spawn(move || {
            let mut tx = EventSender::<Event>::new(tube.into_local());
            let mut buf = vec![Event::default(); batch];
            let mut seq = 0;
            while seq < count {
                let n = batch.min((count - seq) as usize);
                for (i, e) in buf[..n].iter_mut().enumerate() {
                    e.seq = seq + i as u64;
                    e.timestamp_ns = now_ns();
                }
                if tx.send_timeout(&buf[..n], Duration::from_secs(10)).is_err() {
                    break;
                }
                seq += n as u64;
                let _ = tx.poll_acks();
            }
            while matches!(tx.poll_acks(), Ok(a) if a < seq) {
                if tx.wait_acks(Duration::from_secs(10)).is_err() {
                    break;
                }
            }
            let _ = done.send((seq, tx.poll_acks().unwrap_or(0)));
        });
        Ok(())
    }
}

fn service() -> Result<(), Box<dyn std::error::Error>> {
    let ps = ProcessState::open()?;
    ps.start_thread_pool()?;
    let (tx, rx) = mpsc::channel();
    let svc = Binder::new(EventService {
        done: Mutex::new(tx),
    });
    ServiceManagerClient::new(&ps)?.add_service(NAME, &svc)?;
    let (sent, acked) = rx.recv_timeout(Duration::from_secs(120))?;
    println!("service: sent {sent} events, {acked} acknowledged");
    ps.shutdown(Duration::from_secs(5))?;
    if sent != acked {
        return Err(format!("{} events were not acknowledged", sent - acked).into());
    }
    Ok(())
}

fn client(events: u64, batch: u32) -> Result<(), Box<dyn std::error::Error>> {
    let ps = ProcessState::open()?;
    ps.start_thread_pool()?;
    let sm = ServiceManagerClient::new(&ps)?;
    let svc = sm.wait_for_service(NAME, Duration::from_secs(30))?;
    let mut data = Parcel::new();
    data.write_u64(events)?;
    data.write_u32(batch)?;
    let mut reply = svc.transact(OPEN_STREAM, &data)?;
    let rx = EventReceiver::<Event>::new(read_tube(&mut reply)?);
    let start = Instant::now();
    let mut buf = vec![Event::default(); 256];
    let (mut next, mut packets, mut latency_sum) = (0u64, 0u64, 0i64);
    while next < events {
        let n = rx.recv_timeout(&mut buf, Duration::from_secs(10))?;
        let t = now_ns();
        for e in &buf[..n] {
            if e.seq != next {
                return Err(format!("event {} arrived where {next} was due", e.seq).into());
            }
            latency_sum += t - e.timestamp_ns;
            next += 1;
        }
        packets += 1;
        rx.ack(n as u32)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "client: {next} events in {packets} packets, {:.2} M events/s, mean latency {:.1} µs",
        next as f64 / secs / 1e6,
        latency_sum as f64 / next.max(1) as f64 / 1000.0
    );
    let mut one = [Event::default()];
    match rx.recv_timeout(&mut one, Duration::from_secs(10)) {
        Err(TubeError::PeerClosed) => {}
        other => {
            return Err(format!("expected the service to close the tube, got {other:?}").into())
        }
    }
    ps.shutdown(Duration::from_secs(5))?;
    Ok(())
}

fn parent(events: u64, batch: u64) -> Result<(), Box<dyn std::error::Error>> {
    let (ps, driver) = ProcessState::embedded()?;
    let _sm = ServiceManager::serve(&ps, default_policy())?;
    println!(
        "driver shim at {}; service manager running",
        driver.socket_path().display()
    );
    let me = std::env::current_exe()?;
    let start = |role: &str| {
        Command::new(&me)
            .arg(role)
            .args([
                "--events",
                &events.to_string(),
                "--batch",
                &batch.to_string(),
            ])
            .env(ENV_SOCKET, driver.socket_path())
            .spawn()
    };
    let mut client = start("client")?;
    let mut service = start("service")?;
    let (c, s) = (client.wait()?, service.wait()?);
    ps.shutdown(Duration::from_secs(5))?;
    if !(c.success() && s.success()) {
        return Err(format!("client {c}, service {s}").into());
    }
    println!("ok: the tube end travelled through binder and every event arrived in order");
    Ok(())
}

fn main() -> ExitCode {
    let events = arg("--events", 1_000_000);
    let batch = arg("--batch", 39);
    let r = match std::env::args().nth(1).as_deref() {
        Some("service") => service(),
        Some("client") => client(events, batch as u32),
        _ => parent(events, batch),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tube_over_binder: {e}");
            ExitCode::FAILURE
        }
    }
}
