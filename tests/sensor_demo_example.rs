//! The README's main command (`cargo run --release --example sensor_demo`), end to end at a
//! small scale.
//!
//! An example has no `CARGO_BIN_EXE_*` path a test could run, and `cargo test --test <name>`
//! does not build examples; so this test compiles the example's own source as a module
//! (`#[path]`) and runs its [`demo::run`] with a short window. The parent part runs in the
//! test; the clients are this test binary re-executed (`--exact <test>`) with the example's
//! `SENSOR_DEMO_CHILD` variable set, which makes the test function act as a client through
//! the very code the example's `main` calls. Assertions are on counts; time limits only guard
//! against hangs.

#[path = "../examples/sensor_demo.rs"]
#[allow(dead_code)]
mod demo;

use clap::Parser;

const DEMO_TEST: &str = "demo_clients_get_what_they_asked_for_over_binder";

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn demo_clients_get_what_they_asked_for_over_binder() {
    if let Some(result) = demo::child_role() {
        if let Err(e) = &result {
            eprintln!("demo client: {e}");
        }
        std::process::exit(i32::from(result.is_err()));
    }
    // Three clients: accel@50 gyro@200, gyro@500 mag@1000, mag@50 wake@200 (wake-up events
    // to acknowledge); each also reads its first sensor through a direct channel.
    let args = demo::Args::try_parse_from([
        "sensor_demo",
        "--clients",
        "3",
        "--duration",
        "2",
        "--direct",
        "--quiet",
    ])
    .unwrap();
    let launcher = demo::Launcher {
        program: std::env::current_exe().unwrap(),
        args: ["--exact", DEMO_TEST, "--nocapture", "--test-threads=1"]
            .map(String::from)
            .to_vec(),
    };
    let fds = open_fds();
    let mut phases = Vec::new();
    let summary = demo::run(&args, &launcher, &mut |p| phases.push(p)).unwrap();
    demo::print_summary(&summary);
    assert!(summary.ok(), "the demo failed: {summary:?}");
    assert_eq!(phases, [demo::Phase::Go, demo::Phase::Done]);
    assert_eq!(summary.clients.len(), 3);
    for (i, c) in summary.clients.iter().enumerate() {
        assert!(c.exited_ok, "client {i} failed");
        assert_eq!(c.sensors.len(), 2, "client {i}: one report per sensor");
        for s in &c.sensors {
            assert!(s.expected > 0);
            assert!(
                s.received * 10 >= s.expected * 9,
                "client {i} sensor {}: {} of {} events",
                s.handle,
                s.received,
                s.expected
            );
            assert!(s.increasing);
        }
        assert_eq!(c.unexplained(), 0, "client {i}: losses nobody counted");
        let (got, due, lost, increasing) = c.direct.expect("a direct channel report");
        assert!(
            got * 10 >= due * 9 && due > 0,
            "client {i}: direct {got}/{due}"
        );
        assert_eq!(lost, 0);
        assert!(increasing);
        let service = c.service.as_ref().expect("the service's counters");
        assert_eq!(service.wakeup_outstanding, 0);
        assert!(c.latency.as_ref().is_some_and(|h| h.len() >= c.received()));
    }
    // Client 2 has the wake-up accelerometer: its events were flagged and acknowledged, and
    // the service saw the acks.
    let waker = &summary.clients[2];
    assert!(waker.wakeups > 0);
    assert_eq!(waker.acks_sent, waker.wakeups);
    let service = waker.service.as_ref().unwrap();
    assert!(service.wakeup_flagged > 0);
    assert_eq!(service.acks_received, waker.acks_sent);
    // The driver, the service and every pipe to the clients are gone.
    assert_eq!(open_fds(), fds, "fds left behind by the demo");
}

#[test]
fn demo_rejects_bad_arguments_with_a_reason() {
    let plans = |extra: &[&str]| {
        let args = demo::Args::try_parse_from(["sensor_demo"].iter().chain(extra)).unwrap();
        demo::make_plans(&args)
    };
    for (bad, why) in [
        (&["--rates", "0"][..], "rate 0"),
        (&["--rates", "5000"], "rate 5000"),
        (&["--sensors", "baro"], "unknown sensor"),
        (&["--sensors", "accel,accel"], "twice"),
        (&["--clients", "0"], "--clients"),
        (&["--per-client", "5"], "--per-client"),
        (&["--duration", "0"], "--duration"),
    ] {
        let err = plans(bad).expect_err(&format!("{bad:?} accepted"));
        assert!(err.to_string().contains(why), "{bad:?}: {err}");
    }
    // Plans travel to the clients as text: they round-trip, and garbage is an error.
    let good = plans(&["--clients", "3", "--direct", "--batch-ms", "7"]).unwrap();
    assert_eq!(good.len(), 3);
    for p in &good {
        assert_eq!(demo::Plan::decode(&p.encode()).unwrap(), *p);
    }
    for garbage in ["", ";;;;", "1;2;3;-;x:y:z", "0;1;0;-;1:50:0", "a;b;c;d;e;f"] {
        assert!(demo::Plan::decode(garbage).is_err(), "{garbage:?} accepted");
    }
}

#[test]
fn demo_plans_expect_the_spacing_the_service_delivers() {
    // accel@50 next to accel@1000: the HAL runs at 1 ms and the 50 Hz client takes the first
    // sample 18 ms (0.9 period) after the last one it took.
    let args = demo::Args::try_parse_from([
        "sensor_demo",
        "--clients",
        "2",
        "--sensors",
        "accel",
        "--per-client",
        "1",
        "--rates",
        "50,1000",
    ])
    .unwrap();
    let plans = demo::make_plans(&args).unwrap();
    assert_eq!(plans[0].subs[0].spacing_ns, 18_000_000);
    assert_eq!(plans[1].subs[0].spacing_ns, 1_000_000);
}
