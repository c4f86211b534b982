//! rsbinder's side of the interop matrix: `service` or `client` (see the crate docs).

use bittube_interop::*;
use rsbinder::hub::{BnServiceCallback, IServiceCallback};
use rsbinder::{BinderResult, Interface, ParcelFileDescriptor, ProcessState, SIBinder, Strong};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

mod aidl {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/echo.rs"));
}
use aidl::bittube::interop::IEcho::{BnEcho, IEcho};

/// IEcho on rsbinder.
struct Echo;

impl Interface for Echo {}

impl IEcho for Echo {
    fn echo(&self, text: &str) -> BinderResult<String> {
        Ok(format!("{text} echoed"))
    }

    fn appendWorld(&self, fd: &ParcelFileDescriptor) -> BinderResult<()> {
        nix::unistd::write(fd.as_fd(), b"world").map_err(|_| rsbinder::StatusCode::BadValue)?;
        Ok(())
    }

    fn openTube(&self, count: i32) -> BinderResult<ParcelFileDescriptor> {
        use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
        let count = u32::try_from(count).map_err(|_| rsbinder::StatusCode::BadValue)?;
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|_| rsbinder::StatusCode::NoMemory)?;
        let bytes: Vec<u8> = (0..count)
            .flat_map(event)
            .flat_map(u32::to_le_bytes)
            .collect();
        nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&mine),
            &bytes,
            MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(|_| rsbinder::StatusCode::BadValue)?;
        Ok(ParcelFileDescriptor::new(theirs))
    }
}

fn init() {
    ProcessState::init(DEVICE, 4).expect("rsbinder on /dev/binder");
    ProcessState::start_thread_pool();
}

fn service() {
    init();
    rsbinder::hub::add_service(RSB_SERVICE, BnEcho::new_binder(Echo)).expect("add_service");
    println!("ready");
    serve_until_stdin_closes();
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

fn tempfile() -> Result<std::fs::File, String> {
    let fd = nix::fcntl::open(
        "/tmp",
        nix::fcntl::OFlag::O_TMPFILE | nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .map_err(err)?;
    Ok(std::fs::File::from(fd))
}

fn call_echo(checks: &mut Checks, echo: &Strong<dyn IEcho>) {
    checks.check(
        "call string",
        match echo.echo("hi") {
            Ok(s) if s == "hi echoed" => Ok(()),
            other => Err(err(other)),
        },
    );
    checks.check(
        "call fd",
        (|| {
            let mut file = tempfile()?;
            file.write_all(b"hello").map_err(err)?;
            let dup: OwnedFd = file.try_clone().map_err(err)?.into();
            echo.appendWorld(&ParcelFileDescriptor::new(dup))
                .map_err(err)?;
            let mut all = String::new();
            file.rewind().map_err(err)?;
            file.read_to_string(&mut all).map_err(err)?;
            (all == "helloworld")
                .then_some(())
                .ok_or(format!("file holds {all:?}"))
        })(),
    );
    checks.check(
        "call tube",
        (|| {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let pfd = echo.openTube(TUBE_EVENTS as i32).map_err(err)?;
            let mut fds = [PollFd::new(pfd.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(20_000u16)).map_err(err)?;
            let mut buf = [0u8; 4096];
            let n = nix::sys::socket::recv(
                std::os::fd::AsRawFd::as_raw_fd(&pfd),
                &mut buf,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            )
            .map_err(err)?;
            check_events(&buf[..n], TUBE_EVENTS)
        })(),
    );
}

/// Tells the test thread about registrations.
struct Notified(Mutex<std::sync::mpsc::SyncSender<String>>);

impl Interface for Notified {}

impl IServiceCallback for Notified {
    fn onRegistration(&self, name: &str, _binder: &SIBinder) -> BinderResult<()> {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.try_send(name.to_owned());
        }
        Ok(())
    }
}

fn notify(checks: &mut Checks) {
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let cb = BnServiceCallback::new_binder(Notified(Mutex::new(tx)));
    checks.check(
        "register for notifications",
        rsbinder::hub::register_for_notifications(LATE_NAME, &cb).map_err(err),
    );
    checks.check(
        "add",
        rsbinder::hub::add_service(LATE_NAME, BnEcho::new_binder(Echo)).map_err(err),
    );
    checks.check(
        "notified",
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(name) if name == LATE_NAME => Ok(()),
            other => Err(err(other)),
        },
    );
    checks.check(
        "unregister",
        rsbinder::hub::unregister_for_notifications(LATE_NAME, &cb).map_err(err),
    );
}

/// rsbinder's client against bittube's service manager and a bittube IEcho (cell a).
fn client() {
    init();
    let mut checks = Checks::default();
    println!("waiting");
    let echo = rsbinder::hub::wait_for_interface::<dyn IEcho>(BT_SERVICE);
    checks.check("wait", echo.as_ref().map(drop).map_err(err));
    let names = rsbinder::hub::list_services(rsbinder::hub::DUMP_FLAG_PRIORITY_ALL);
    let has = |n: &str| names.iter().any(|x| x == n);
    checks.check(
        "list",
        (has("manager") && has(BT_SERVICE))
            .then_some(())
            .ok_or(format!("{names:?}")),
    );
    checks.check(
        "check",
        rsbinder::hub::check_service(BT_SERVICE)
            .map(drop)
            .ok_or("none".into()),
    );
    checks.check(
        "get",
        match rsbinder::hub::try_get_service(BT_SERVICE) {
            Ok(Some(_)) => Ok(()),
            other => Err(err(other)),
        },
    );
    checks.check(
        "get manager",
        match rsbinder::hub::check_service("manager") {
            Some(b) if b.descriptor() == "android.os.IServiceManager" => Ok(()),
            other => Err(err(other.map(|b| b.descriptor().to_owned()))),
        },
    );
    checks.check(
        "isDeclared",
        match rsbinder::hub::try_is_declared(BT_SERVICE) {
            Ok(false) => Ok(()),
            other => Err(err(other)),
        },
    );
    checks.check(
        "getServiceDebugInfo",
        match rsbinder::hub::try_get_service_debug_info() {
            Ok(infos) if infos.iter().any(|i| i.name == BT_SERVICE) => Ok(()),
            other => Err(err(other)),
        },
    );
    if let Ok(echo) = &echo {
        call_echo(&mut checks, echo);
    }
    notify(&mut checks);
    std::process::exit(checks.exit_code());
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("service") => service(),
        Some("client") => client(),
        other => {
            eprintln!("rsb_peer: unknown role {other:?} (service | client)");
            std::process::exit(2);
        }
    }
}
