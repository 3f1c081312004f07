//! `retrofit-gateway`: parses the command line and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use retrofit_gateway::commands;
#[cfg(feature = "demo")]
use retrofit_gateway::config::parse_duration;
#[cfg(feature = "demo")]
use retrofit_gateway::demo::{self, month::MonthOptions, DemoOptions};

const USAGE: &str = "usage:
  retrofit-gateway run -c FILE           poll the configured devices until SIGTERM/SIGINT
  retrofit-gateway check-config -c FILE  validate a config; print every problem
  retrofit-gateway plan -c FILE          print the Modbus requests of each poll cycle
  retrofit-gateway demo [-c FILE] [--duration 2m] [--lines] [--no-faults]
                                         the simulated community and the gateway in one process
  retrofit-gateway report --month YYYY-MM [-o FILE] [-c FILE]
                                         the month's KPI report as one HTML page (default config
                                         /etc/retrofit-gateway/gateway.toml, output stdout)
  retrofit-gateway demo-month [--month YYYY-MM] [-o FILE] [--data-dir DIR] [-c FILE] [--no-faults]
                                         replay the demo community through a month (a leak, a
                                         voltage sag, a cold week; --no-faults: none) and write
                                         its report";

enum Command {
    Run(PathBuf),
    CheckConfig(PathBuf),
    Plan(PathBuf),
    #[cfg(feature = "demo")]
    Demo(DemoOptions),
    Report {
        config: PathBuf,
        month: String,
        output: Option<PathBuf>,
    },
    #[cfg(feature = "demo")]
    DemoMonth(MonthOptions),
}

fn parse(args: Vec<String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let command = args.next().ok_or_else(String::new)?;
    let mut config: Option<PathBuf> = None;
    let mut month: Option<String> = None;
    let mut output: Option<PathBuf> = None;
    #[cfg(feature = "demo")]
    let mut data_dir: Option<PathBuf> = None;
    #[cfg(feature = "demo")]
    let mut demo = DemoOptions {
        config: PathBuf::from("config/demo.toml"),
        duration: None,
        print_lines: false,
        faults: true,
    };
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-c" | "--config" => {
                config = Some(args.next().ok_or("-c needs a file")?.into());
            }
            #[cfg(feature = "demo")]
            "--duration" if command == "demo" => {
                let text = args.next().ok_or("--duration needs a value such as 2m")?;
                demo.duration =
                    Some(parse_duration(&text).map_err(|e| format!("--duration: {e}"))?);
            }
            #[cfg(feature = "demo")]
            "--lines" if command == "demo" => demo.print_lines = true,
            #[cfg(feature = "demo")]
            "--no-faults" if command == "demo" || command == "demo-month" => demo.faults = false,
            "--month" if command == "report" || command == "demo-month" => {
                month = Some(args.next().ok_or("--month needs YYYY-MM")?);
            }
            "-o" | "--output" if command == "report" || command == "demo-month" => {
                output = Some(args.next().ok_or("-o needs a file")?.into());
            }
            #[cfg(feature = "demo")]
            "--data-dir" if command == "demo-month" => {
                data_dir = Some(args.next().ok_or("--data-dir needs a directory")?.into());
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let required = |config: Option<PathBuf>| config.ok_or(format!("{command} needs -c FILE"));
    match command.as_str() {
        "run" => Ok(Command::Run(required(config)?)),
        "check-config" => Ok(Command::CheckConfig(required(config)?)),
        "plan" => Ok(Command::Plan(required(config)?)),
        #[cfg(feature = "demo")]
        "demo" => {
            if let Some(config) = config {
                demo.config = config;
            }
            Ok(Command::Demo(demo))
        }
        "report" => Ok(Command::Report {
            config: config.unwrap_or_else(|| PathBuf::from("/etc/retrofit-gateway/gateway.toml")),
            month: month.ok_or("report needs --month YYYY-MM")?,
            output,
        }),
        #[cfg(feature = "demo")]
        "demo-month" => {
            let month = month.unwrap_or_else(|| "2025-12".into());
            Ok(Command::DemoMonth(MonthOptions {
                config: config.unwrap_or_else(|| PathBuf::from("config/demo.toml")),
                output: output.unwrap_or_else(|| PathBuf::from(format!("report-{month}.html"))),
                data_dir: data_dir
                    .unwrap_or_else(|| std::env::temp_dir().join("retrofit-gateway-demo-month")),
                month,
                faults: demo.faults,
            }))
        }
        #[cfg(not(feature = "demo"))]
        "demo" | "demo-month" => Err(format!(
            "{command}: this is a field build, without the demo (built with --no-default-features)"
        )),
        "-h" | "--help" => Err(String::new()),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Logs to standard error at `info`, or as `RUST_LOG` says: a level and `target=level`
/// directives, comma-separated (`warn,retrofit_gateway::sources=debug`). These are tracing's
/// `Targets`; EnvFilter's span and field filters are left out with the regex engine they need
/// (about 200 KB of the field binary, all of it resident).
fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    // The demo's embedded broker logs every connection as an error; its own log is off.
    let standard = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("rumqttd", LevelFilter::OFF);
    let mut refused = None;
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) => text.parse::<Targets>().unwrap_or_else(|e| {
            refused = Some(format!(
                "RUST_LOG={text:?} is not a log filter ({e}); logging at info"
            ));
            standard
        }),
        Err(_) => standard,
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
    if let Some(refused) = refused {
        tracing::warn!("{refused}");
    }
}

/// Two malloc settings for a small, long-running process:
/// - one arena: glibc gives each new thread an arena of its own; the log I/O thread's (and any
///   short-lived blocking thread's) kept a few hundred KB resident each, for two threads that
///   never contend;
/// - a fixed mmap threshold of 128 KiB: a forwarder batch (up to `batch_bytes`, read, decoded
///   and sent) is mapped and unmapped each time instead of raising glibc's dynamic threshold
///   and staying in the heap, which after draining a backlog never gave the memory back.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc parameters; it runs before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let command = match parse(std::env::args().skip(1).collect()) {
        Ok(command) => command,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("retrofit-gateway: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    match command {
        Command::CheckConfig(path) => match commands::check_config(&path) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Plan(path) => match retrofit_gateway::config::load_config(&path) {
            Ok(config) => {
                print!("{}", commands::plan_report(&config));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Run(path) => {
            let config = match retrofit_gateway::config::load_config(&path) {
                Ok(config) => config,
                Err(e) => return not_starting(&path, &e.to_string()),
            };
            let threads = config.gateway.gateway.worker_threads.get();
            match daemon_runtime(threads).and_then(|rt| rt.block_on(commands::run(config))) {
                Err(e) if unusable_config(&e) => not_starting(&path, &format!("{e:#}")),
                result => exit_with(result),
            }
        }
        #[cfg(feature = "demo")]
        Command::Demo(options) => {
            exit_with(runtime().and_then(|rt| rt.block_on(demo::run(options))))
        }
        Command::Report {
            config,
            month,
            output,
        } => exit_with(commands::report(&config, &month, output.as_deref())),
        #[cfg(feature = "demo")]
        Command::DemoMonth(options) => exit_with(demo::month::run(&options).map(|summary| {
            println!(
                "{}: {} days, {} samples, {} alarms raised in {} incidents; report in {}",
                options.month,
                summary.days,
                summary.samples,
                summary.alarms_raised,
                summary.incidents,
                options.output.display()
            );
            for (rule, raises) in &summary.raised_by_rule {
                println!("  {rule}: {raises}");
            }
        })),
    }
}

/// The daemon's runtime: one thread unless the config asks for more (`[gateway]
/// worker_threads`).
fn daemon_runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    Ok(builder.enable_all().build()?)
}

#[cfg(feature = "demo")]
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `run`'s exit status for a config it cannot run with (sysexits' EX_CONFIG): the unit's
/// `RestartPreventExitStatus=` keeps systemd from restarting it every few seconds for ever.
const EX_CONFIG: u8 = 78;

/// Whether `run` failed on something the config names that cannot work as it is: a secret it
/// cannot read, a broker's TLS files. A restart would fail the same way.
fn unusable_config(e: &anyhow::Error) -> bool {
    use retrofit_gateway::sinks::influx::write::EndpointError;
    e.chain().any(|cause| {
        cause.is::<retrofit_gateway::secret::SecretError>()
            || cause.is::<retrofit_gateway::mqtt::BrokerError>()
            || matches!(
                cause.downcast_ref::<EndpointError>(),
                Some(EndpointError::Secret(_))
            )
    })
}

/// One line that says what to do, then the problems; exits with [`EX_CONFIG`].
fn not_starting(path: &std::path::Path, problems: &str) -> ExitCode {
    eprintln!(
        "retrofit-gateway: not starting: {} cannot be used as it is (see below); fix it, check it with `retrofit-gateway check-config -c {}`, then `systemctl restart retrofit-gateway`",
        path.display(),
        path.display()
    );
    eprintln!("{problems}");
    ExitCode::from(EX_CONFIG)
}

fn exit_with(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("retrofit-gateway: {e:#}");
            ExitCode::from(1)
        }
    }
}
