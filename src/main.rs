//! `retrofit-gateway`: parses the command line (clap; its help is written in Chinese for the
//! installers and operators who read it) and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{FromArgMatches, Parser, Subcommand};
use retrofit_gateway::commands;

/// The config the package installs, which `report` reads when none is given.
const INSTALLED_CONFIG: &str = "/etc/retrofit-gateway/gateway.toml";

const EXIT_CODES: &str = "退出码：
  0   成功
  1   失败：check-config 发现配置问题，read 有点未读到，或命令运行出错（原因见标准错误输出）
  2   命令行用法错误
  78  run：配置无法使用（无效、缺少密钥或证书），不启动；systemd 不会反复重启它";

/// 老旧小区改造的边缘网关：轮询二次供水泵房、减压阀、配电室、换热站和燃气调压箱的设备，按改造方案把每个读数检查一遍，报警推送给物业，数据转发到中心 InfluxDB。
#[derive(Parser)]
#[command(name = "retrofit-gateway", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// 运行网关：轮询设备、检查报警、转发数据，直到收到 SIGTERM/SIGINT（systemd 用它启动）
    Run {
        /// 配置文件
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// 检查配置文件，逐条列出所有问题（文件: 键路径: 问题（应为…））
    CheckConfig {
        /// 配置文件
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// 再打开每条总线，把每台设备读一次（现场调试）
        #[arg(long)]
        connect: bool,
    },
    /// 列出每条总线每个轮询周期的 Modbus 请求（站号、功能码、起始地址、数量、对应的点）和预计占用总线的时间
    Plan {
        /// 配置文件
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// 调试：立即读一台设备一次，列出每个点的值、单位和原始寄存器，每次请求的用时和设备答的异常
    Read {
        /// 配置文件
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// 设备编号（配置里的 id）
        device: String,
        /// 同时列出每次 Modbus 回复的全部寄存器
        #[arg(long)]
        raw: bool,
    },
    /// 调试：在一条 Modbus 总线上逐个站号询问，列出有应答的站号和配置里的设备
    Scan {
        /// 配置文件
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// 总线编号（配置里的 id）
        bus: String,
        /// 要问的站号，如 1-247、1,2,10-20
        #[arg(long, value_name = "LIST", default_value = "1-247")]
        units: String,
        /// 每个站号等多久（默认用总线的 timeout）
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        timeout: Option<Duration>,
    },
    /// 演示：模拟小区和网关在同一进程里运行，不需要任何外部服务；打印读数、注入的故障和报警
    Demo {
        /// 配置文件（默认用程序内置的演示配置）
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// 运行多久后退出，如 30s、2m（默认一直运行到 Ctrl-C）
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        duration: Option<Duration>,
        /// 逐行打印每个读数（InfluxDB 行协议），不打印摘要
        #[arg(long)]
        lines: bool,
        /// 不注入故障
        #[arg(long)]
        no_faults: bool,
    },
    /// 生成某月的达标月报（一个 HTML 页面）
    Report {
        /// 月份，如 2025-12
        #[arg(long, value_name = "YYYY-MM")]
        month: String,
        /// 输出文件（默认写到标准输出）
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// 配置文件
        #[arg(short, long, value_name = "FILE", default_value = INSTALLED_CONFIG)]
        config: PathBuf,
    },
    /// 用模拟小区回放一整个月（含一次爆管、一次电压暂降、一周寒潮），并生成该月月报
    DemoMonth {
        /// 月份
        #[arg(long, value_name = "YYYY-MM", default_value = "2025-12")]
        month: String,
        /// 月报文件（默认 report-YYYY-MM.html）
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// 存放达标统计的目录（默认在系统临时目录下）
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// 配置文件（默认用程序内置的演示配置）
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// 不回放故障：只有改造后小区的平常日子
        #[arg(long)]
        no_faults: bool,
    },
}

/// The parser with its headings and its own flags in Chinese, like the rest of the help.
fn command_line() -> clap::Command {
    use clap::{Arg, ArgAction, CommandFactory};
    fn localized(command: clap::Command) -> clap::Command {
        command
            .help_template("{about}\n\n用法：{usage}\n\n{all-args}{after-help}")
            .subcommand_help_heading("命令")
            .mut_args(|arg| {
                let heading = if arg.is_positional() {
                    "参数"
                } else {
                    "选项"
                };
                arg.help_heading(heading)
            })
            .disable_help_flag(true)
            .arg(
                Arg::new("help")
                    .short('h')
                    .long("help")
                    .action(ArgAction::Help)
                    .help("显示帮助")
                    .help_heading("选项"),
            )
            .mut_subcommands(localized)
    }
    localized(Cli::command())
        .disable_help_subcommand(true)
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::Version)
                .help("显示版本")
                .help_heading("选项"),
        )
}

fn duration(text: &str) -> Result<Duration, String> {
    retrofit_gateway::config::parse_duration(text)
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
    let matches = command_line().get_matches();
    let Cli { command } = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging();
    match command {
        Command::CheckConfig { config, connect } => match commands::check_config(&config) {
            Ok(summary) => {
                println!("{summary}");
                if !connect {
                    return ExitCode::SUCCESS;
                }
                let checked = commissioning(&config, |config| async move {
                    Ok(retrofit_gateway::commission::connect_all(&config).await)
                });
                match checked {
                    Ok((text, all)) => {
                        print!("{text}");
                        ExitCode::from(if all { 0 } else { 1 })
                    }
                    Err(e) => exit_with(Err(e)),
                }
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Plan { config } => match retrofit_gateway::config::load_config(&config) {
            Ok(config) => {
                print!("{}", commands::plan_report(&config));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Run { config: path } => {
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
        Command::Read {
            config,
            device,
            raw,
        } => {
            let reading = commissioning(&config, |config| async move {
                retrofit_gateway::commission::read(&config, &device, raw).await
            });
            match reading {
                Ok(reading) => {
                    print!("{}", reading.text);
                    ExitCode::from(if reading.complete() { 0 } else { 1 })
                }
                Err(e) => exit_with(Err(e)),
            }
        }
        Command::Scan {
            config,
            bus,
            units,
            timeout,
        } => {
            let units = match retrofit_gateway::commission::parse_units(&units) {
                Ok(units) => units,
                Err(e) => {
                    eprintln!("retrofit-gateway: --units: {e}");
                    return ExitCode::from(2);
                }
            };
            let scanned = commissioning(&config, |config| async move {
                retrofit_gateway::commission::scan(&config, &bus, &units, timeout).await
            });
            match scanned {
                Ok(scan) => {
                    print!("{}", scan.text);
                    ExitCode::SUCCESS
                }
                Err(e) => exit_with(Err(e)),
            }
        }
        Command::Report {
            config,
            month,
            output,
        } => exit_with(commands::report(&config, &month, output.as_deref())),
        #[cfg(feature = "demo")]
        Command::Demo {
            config,
            duration,
            lines,
            no_faults,
        } => {
            let options = retrofit_gateway::demo::DemoOptions {
                config,
                duration,
                print_lines: lines,
                faults: !no_faults,
            };
            exit_with(runtime().and_then(|rt| rt.block_on(retrofit_gateway::demo::run(options))))
        }
        #[cfg(feature = "demo")]
        Command::DemoMonth {
            month,
            output,
            data_dir,
            config,
            no_faults,
        } => {
            let options = retrofit_gateway::demo::month::MonthOptions {
                config,
                output: output.unwrap_or_else(|| PathBuf::from(format!("report-{month}.html"))),
                data_dir: data_dir
                    .unwrap_or_else(|| std::env::temp_dir().join("retrofit-gateway-demo-month")),
                month,
                faults: !no_faults,
            };
            exit_with(retrofit_gateway::demo::month::run(&options).map(|summary| {
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
            }))
        }
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } | Command::DemoMonth { .. } => {
            eprintln!(
                "retrofit-gateway: 这是现场版本，不含演示（构建时用了 --no-default-features）"
            );
            ExitCode::from(2)
        }
    }
}

/// A commissioning command: `path`'s config loaded, then `command` run on a one-thread runtime.
fn commissioning<T, F>(
    path: &std::path::Path,
    command: impl FnOnce(retrofit_gateway::config::LoadedConfig) -> F,
) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let config = retrofit_gateway::config::load_config(path)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(command(config))
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
