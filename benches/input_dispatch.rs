//! Input dispatch bench: motion events at 1 kHz to 8 windows, each in its own application
//! process registered through binder, no batching and no stalled application (the input demo,
//! `examples/input_demo.rs`, in that configuration), against an equal-work raw dispatcher run
//! just before it in the same invocation (`benches/common/raw_input.rs`: the same windows,
//! channels, messages and finished signals, libc only, no binder and no dispatcher logic).
//!
//! ```text
//! cargo bench --bench input_dispatch
//! cargo bench --bench input_dispatch -- --smoke     # 4 windows for 0.5 s
//! ```
//!
//! Prints publish → consume (the application's clock) and publish → finished read for both,
//! bittube/raw at p50, p90, p99 and max, the CPU both runs took (the raw dispatcher's threads
//! and applications; for bittube every process of the demo, binder setup included), and
//! draws the CDFs to `target/bench-plots/input_dispatch.svg` (bittube's from the histograms
//! the demo prints with `--histograms`, the raw dispatcher's from its own). Goal: bittube's p99 ≤ 1.5× the
//! raw dispatcher's.

#[allow(dead_code)]
#[path = "../examples/input_demo.rs"]
mod demo;
#[allow(dead_code)] // each bench uses part of it
#[path = "common/plot.rs"]
mod plot;
#[path = "common/raw_input.rs"]
mod raw_input;

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use hdrhistogram::Histogram;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A latency line of the demo: p50, p90, p99, max in µs.
#[derive(Clone, Copy, Debug, Default)]
struct Quantiles([f64; 4]);

const QS: [f64; 4] = [0.5, 0.9, 0.99, 1.0];

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Quantiles {
        Quantiles(QS.map(|q| h.value_at_quantile(q) as f64 / 1000.0))
    }

    /// Parses `... p50=  12 µs  p90=  20 µs  p99=  40 µs  max=  90 µs`.
    fn parse(line: &str) -> Option<Quantiles> {
        let mut out = [0.0; 4];
        for (i, key) in ["p50=", "p90=", "p99=", "max="].iter().enumerate() {
            let rest = &line[line.find(key)? + key.len()..];
            out[i] = rest.split_whitespace().next()?.parse().ok()?;
        }
        Some(Quantiles(out))
    }
}

fn rusage_children_ns() -> u64 {
    let mut r = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `struct rusage` into the pointer it is given, which points
    // at enough zeroed, writable memory for one.
    let r = unsafe {
        if libc::getrusage(libc::RUSAGE_CHILDREN, r.as_mut_ptr()) != 0 {
            return 0;
        }
        r.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    t(r.ru_utime) + t(r.ru_stime)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// What the demo printed: its consume and finish quantiles and whole distributions (ns, from
/// its `--histograms` lines), and the CPU its processes used.
struct DemoRun {
    consume: Quantiles,
    finish: Quantiles,
    consume_hist: Histogram<u64>,
    finish_hist: Histogram<u64>,
    cpu: u64,
}

/// Runs the demo with `args` (and `--histograms`), its output passed through but for the
/// histogram lines.
fn run_demo(args: &[String]) -> Result<DemoRun, Error> {
    let cpu0 = rusage_children_ns();
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .args(["--no-stall", "--histograms"])
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let (mut consume, mut finish) = (None, None);
    let mut consume_hist = Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3)?;
    let mut finish_hist = consume_hist.clone();
    for line in BufReader::new(out).lines() {
        let line = line?;
        if let ["hist", name, us, count] = line.split_whitespace().collect::<Vec<_>>()[..] {
            let h = match name {
                "consume" => &mut consume_hist,
                "finish" => &mut finish_hist,
                other => return Err(format!("the demo printed a histogram named {other:?}").into()),
            };
            h.saturating_record_n(us.parse::<u64>()?.saturating_mul(1000), count.parse()?);
            continue;
        }
        println!("  | {line}");
        if line.contains("dispatch -> consume") {
            consume = Quantiles::parse(&line);
        } else if line.contains("dispatch -> finished read") {
            finish = Quantiles::parse(&line);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the demo ended with {status}").into());
    }
    if consume_hist.is_empty() || finish_hist.is_empty() {
        return Err("the demo printed no latency histograms".into());
    }
    Ok(DemoRun {
        consume: consume.ok_or("the demo printed no consume latency")?,
        finish: finish.ok_or("the demo printed no finish latency")?,
        consume_hist,
        finish_hist,
        cpu: rusage_children_ns().saturating_sub(cpu0),
    })
}

fn bench() -> Result<(), Error> {
    let smoke = std::env::args().any(|a| a == "--smoke")
        || std::env::var_os("BITTUBE_BENCH_SMOKE").is_some_and(|v| v != "0");
    let (windows, seconds, rate) = if smoke {
        (4, 0.5, 1000)
    } else {
        (8, 5.0, 1000)
    };
    println!(
        "input_dispatch{}: {windows} windows × {rate} Hz motion for {seconds} s, no batching; load average {}",
        if smoke { " (smoke)" } else { "" },
        load_average()
    );
    let raw = raw_input::run(windows, rate, seconds)?;
    println!(
        "raw dispatcher: {} sent, {} finished; load average {}",
        raw.sent,
        raw.finished,
        load_average()
    );
    let args: Vec<String> = [
        "--windows".to_string(),
        windows.to_string(),
        "--rate".into(),
        rate.to_string(),
        "--frame-ms".into(),
        "0".into(),
        "--seconds".into(),
        seconds.to_string(),
    ]
    .into();
    println!("bittube (the input demo, {}):", args.join(" "));
    let demo = run_demo(&args)?;
    let (consume, finish, cpu) = (demo.consume, demo.finish, demo.cpu);
    let (rc, rf) = (Quantiles::of(&raw.consume), Quantiles::of(&raw.finish));
    println!(
        "{:<32} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | bittube/raw p50 p99",
        "µs", "p50", "p90", "p99", "max", "raw p50", "p90", "p99", "max"
    );
    for (name, b, r) in [
        ("publish → consume (app clock)", consume, rc),
        ("publish → finished read", finish, rf),
    ] {
        println!(
            "{name:<32} | {:>8.0} {:>8.0} {:>8.0} {:>8.0} | {:>8.1} {:>8.1} {:>8.1} {:>8.1} | {:>6.2}× {:>6.2}×",
            b.0[0], b.0[1], b.0[2], b.0[3], r.0[0], r.0[1], r.0[2], r.0[3],
            b.0[0] / r.0[0].max(1e-9),
            b.0[2] / r.0[2].max(1e-9)
        );
    }
    println!(
        "CPU: raw dispatcher {:.0} ms (threads) + applications {:.0} ms; bittube demo, all processes with setup and the shim, {:.0} ms",
        raw.dispatcher_cpu as f64 / 1e6,
        raw.app_cpu as f64 / 1e6,
        cpu as f64 / 1e6
    );
    let ratio = consume.0[2] / rc.0[2].max(1e-9);
    println!(
        "goal: publish → consume p99 ≤ 1.5× the raw dispatcher's: {} ({ratio:.2}×); load average {}",
        if ratio <= 1.5 { "met" } else { "NOT met" },
        load_average()
    );
    picture(&demo, &raw);
    Ok(())
}

fn picture(demo: &DemoRun, raw: &raw_input::RawInput) {
    let curves = [
        plot::Curve::from_hist("bittube publish → consume", &demo.consume_hist),
        plot::Curve::from_hist("bittube publish → finished read", &demo.finish_hist),
        plot::Curve::from_hist("raw dispatcher publish → consume", &raw.consume),
        plot::Curve::from_hist("raw dispatcher publish → finished read", &raw.finish),
    ];
    let marks = [plot::Mark {
        name: "goal: bittube consume p99 ≤ 1.5× raw p99".into(),
        at_us: 1.5 * raw.consume.value_at_quantile(0.99) as f64 / 1000.0,
    }];
    match plot::write_cdf(
        "input_dispatch",
        "input_dispatch: publish → consume / finished, CDF",
        &curves,
        &marks,
    ) {
        Ok(p) => println!("picture: {}", p.display()),
        Err(e) => println!("picture not written: {e}"),
    }
}

fn main() -> ExitCode {
    // Children (roles) and the re-run with the bench's arguments go to the demo itself.
    if std::env::var_os("BITTUBE_INPUT_DEMO_ROLE").is_some()
        || std::env::args().any(|a| a == "--windows")
    {
        return demo::main();
    }
    let result = if std::env::var_os(raw_input::APP_ENV).is_some() {
        raw_input::app()
    } else {
        bench()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("input_dispatch: {e}");
            ExitCode::FAILURE
        }
    }
}
