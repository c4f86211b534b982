//! A service hands a client a BitTube end through binder; the client reads the events as a
//! tokio Stream. Run with `cargo run -p bittube-aidl-tests --bin ticker`.
use bittube::binder_ipc::{service_manager::default_policy, shim::ENV_SOCKET};
use bittube::{aidl, AsyncTubeEnd, Binder, BinderError, BitTube, CallContext, ProcessState};
use bittube::{ServiceManager, ServiceManagerClient, TubeEnd};
use futures_util::StreamExt;
use std::time::Duration;

#[allow(dead_code)] // what this program does not use of the generated code
mod generated {
    include!(concat!(env!("OUT_DIR"), "/ticker.rs"));
}
use generated::ITicker;

struct Ticker;

impl ITicker::Interface for Ticker {
    fn subscribe(&self, _: &CallContext, count: i32) -> Result<TubeEnd, BinderError> {
        let (tube, end) = BitTube::new()?.into_ends()?;
        std::thread::spawn(move || {
            for tick in 0..count as u64 {
                tube.send_batch_timeout(&[tick], Duration::from_secs(5))?;
            }
            Ok::<_, bittube::TubeError>(()) // dropping the tube ends the client's stream
        });
        Ok(end)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(shim) = std::env::var_os(ENV_SOCKET) {
        return client(ProcessState::open_shim(shim.as_ref())?).await;
    }
    // The driver shim, the service manager and the service in this process ...
    let (ps, driver) = ProcessState::embedded()?;
    let sm = ServiceManager::serve(&ps, default_policy())?;
    sm.add_local("ticker", Binder::new(ITicker::Server(Ticker)));
    // ... and the client in another one.
    let client = std::process::Command::new(std::env::current_exe()?)
        .env(ENV_SOCKET, driver.socket_path())
        .status()?;
    Ok(client.success().then_some(()).ok_or("the client failed")?)
}

async fn client(ps: ProcessState) -> Result<(), Box<dyn std::error::Error>> {
    let sm = ServiceManagerClient::new(&ps)?;
    let binder = aidl::wait_for_service(&sm, "ticker", Duration::from_secs(5)).await?;
    let ticker = ITicker::AsyncProxy(ITicker::Proxy::new(binder, &ps));
    let tube = ticker.subscribe(1000).await?;
    let mut ticks = AsyncTubeEnd::new(tube)?.into_events::<u64>(16);
    let mut next = 0;
    while let Some(tick) = ticks.next().await {
        assert_eq!(tick?, next);
        next += 1;
    }
    println!("client: {next} ticks, in order");
    Ok(())
}
