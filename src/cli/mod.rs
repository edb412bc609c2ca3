//! The `kdl` command line: `run`, `check`, `repl`, `info`. Thin over `Session`; the
//! language lives in the library. Exit codes: 0 ok, 1 script errors, 2 usage or IO.

mod help;
mod repl;
mod repl_helper;

use clap::{Parser, Subcommand, ValueEnum};
use kdl::diag::Diagnostic;
use kdl::session::Error;
use kdl::Session;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  kdl run examples/quickstart.kd        run a script
  kdl run -e 'use arch; print telugu_50m()'
  kdl check examples/card.kd            every static check, nothing runs
  kdl repl                              explore interactively (:help inside)
  kdl repl examples/card.kd             run a file, then keep its bindings";

#[derive(Parser)]
#[command(name = "kdl", version, about = "kdl, the knowledge-distillation language", after_help = EXAMPLES)]
struct Cli {
    /// Colour in diagnostics
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Check and run a .kd script
    #[command(after_help = "Examples:\n  kdl run examples/quickstart.kd\n  kdl run -n examples/quickstart.kd   plan only\n  kdl run -e 'use losses; print hinton(T=4)'")]
    Run {
        /// The script
        #[arg(required_unless_present = "expr")]
        file: Option<PathBuf>,
        /// Run this code instead of a file
        #[arg(short = 'e', long = "eval", value_name = "CODE", conflicts_with = "file")]
        expr: Option<String>,
        /// Load models, data and tokenizers and print the first training plan, then stop
        /// before anything trains, scores data or writes
        #[arg(short = 'n', long = "dry-run")]
        dry_run: bool,
        /// What device="auto" means for this run: cpu, cuda, cuda:N or auto (CUDA when
        /// present)
        #[arg(long, value_name = "DEVICE", default_value = "auto")]
        device: String,
    },
    /// Run every static check on scripts, without running them
    #[command(after_help = "Examples:\n  kdl check examples/card.kd\n  kdl check examples/*.kd")]
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Interactive session (runs FILE first when given)
    #[command(after_help = "Examples:\n  kdl repl\n  kdl repl examples/card.kd\nInside: :help, :type EXPR, :load FILE, :quit")]
    Repl { file: Option<PathBuf> },
    /// Write a model as a GGUF file for llama.cpp: a Hugging Face folder, a GGUF file, or
    /// a training run's folder (its newest intact checkpoint)
    #[command(after_help = "Examples:\n  kdl export runs/student student.gguf --quant q8_0\n  kdl export out/merged merged.gguf")]
    Export {
        /// The model: a folder, a .gguf file or a run folder
        source: PathBuf,
        /// The .gguf file to write
        out: PathBuf,
        /// The 2-D weights' type: f32, f16, bf16, q8_0, q6_k, q4_k_m or q4_0
        #[arg(long, default_value = "f16")]
        quant: String,
    },
    /// Show the device, CPU features and stdlib modules
    Info,
}

/// The model folder or file `kdl export` reads: a run folder means its newest
/// checkpoint that verifies.
fn export_source(source: &std::path::Path) -> Result<PathBuf, String> {
    let is_run = source.is_dir() && !source.join("config.json").is_file() && !source.join("adapter_config.json").is_file();
    if !is_run {
        return Ok(source.to_path_buf());
    }
    match kdl::engine::train::checkpoint::latest_intact(source) {
        (Some(dir), skipped) => {
            for why in skipped {
                println!("passed over {why}");
            }
            println!("exporting {}, the run's newest intact checkpoint", dir.display());
            Ok(dir)
        }
        (None, skipped) if !skipped.is_empty() => Err(format!("{}: no checkpoint verifies ({})", source.display(), skipped.join("; "))),
        (None, _) => Err(format!("{}: neither a model folder (config.json) nor a run folder with checkpoints (step-N/)", source.display())),
    }
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

fn report(session: &Session, diags: &[Diagnostic], color: bool) {
    if !diags.is_empty() {
        eprint!("{}", session.render(diags, color));
    }
}

fn exit_for(err: &Error) -> ExitCode {
    ExitCode::from(if err.io { 2 } else { 1 })
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ctrl-C stops generation and training at a clean point instead of killing them. The
    // REPL installs it itself, after its line editor, which takes SIGINT over when created.
    if !matches!(cli.command, Command::Repl { .. }) {
        kdl::interrupt::install();
    }
    let color = use_color(cli.color);
    match cli.command {
        Command::Run { file, expr, dry_run, device } => {
            if let Err(why) = kdl::engine::choose_default_device(&device) {
                eprintln!("error: --device {device}: {why}");
                return ExitCode::from(2);
            }
            let mut session = Session::new();
            session.set_color(color);
            session.set_dry_run(dry_run);
            let prepared = match (&file, &expr) {
                (_, Some(code)) => session.prepare_str("<-e>", code),
                (Some(f), None) => session.prepare_file(f),
                (None, None) => unreachable!("clap requires one"),
            };
            // Warnings come before any output, errors stop the run before it starts.
            let warnings = session.take_warnings();
            report(&session, &warnings, color);
            let result = prepared.and_then(|p| session.execute(p)).map(|_| ());
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    report(&session, &e.diagnostics, color);
                    exit_for(&e)
                }
            }
        }
        Command::Check { files } => {
            let mut worst = 0u8;
            for f in files {
                let mut session = Session::new();
                match session.check_file(&f) {
                    Ok(warnings) => {
                        report(&session, &warnings, color);
                        let w = if warnings.is_empty() { String::new() } else { format!(", {}", count(warnings.len(), "warning")) };
                        println!("{}: ok{w}", f.display());
                    }
                    Err(e) => {
                        report(&session, &e.diagnostics, color);
                        let errors = e.diagnostics.iter().filter(|d| d.is_error()).count();
                        let warnings = e.diagnostics.len() - errors;
                        let w = if warnings == 0 { String::new() } else { format!(", {}", count(warnings, "warning")) };
                        eprintln!("{}: {}{w}", f.display(), count(errors, "error"));
                        worst = worst.max(if e.io { 2 } else { 1 });
                    }
                }
            }
            ExitCode::from(worst)
        }
        Command::Repl { file } => repl::run(file, color),
        Command::Export { source, out, quant } => {
            if let Err(why) = kdl::engine::gguf::FileType::parse(&quant) {
                eprintln!("error: --quant {quant}: {why}");
                return ExitCode::from(2);
            }
            if !source.exists() {
                eprintln!("error: {}: no such file or folder", source.display());
                return ExitCode::from(2);
            }
            let source = match export_source(&source) {
                Ok(s) => s,
                Err(why) => {
                    eprintln!("error: {why}");
                    return ExitCode::from(2);
                }
            };
            let quote = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
            let code = format!("export(load({}), {}, quant={})", quote(&source), quote(&out), serde_json::to_string(&quant).unwrap_or_default());
            let mut session = Session::new();
            session.set_color(color);
            match session.prepare_str("<export>", &code).and_then(|p| session.execute(p)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    report(&session, &e.diagnostics, color);
                    exit_for(&e)
                }
            }
        }
        Command::Info => {
            println!("kdl {}", env!("CARGO_PKG_VERSION"));
            println!("device   {}", kdl::engine::describe_device());
            println!("cuda     {}", kdl::engine::describe_cuda());
            let x = kdl::engine::device::cpu_bf16_speedup();
            let choice = if kdl::engine::device::bf16_pays_off(tch::Device::Cpu) { "bf16" } else { "f32" };
            println!("bf16     a bf16 matmul runs {x:.2}× f32 on this CPU (measured): teacher_dtype=\"auto\" picks {choice} here");
            println!("stdlib   {}", kdl::loader::stdlib_names().join(", "));
            ExitCode::SUCCESS
        }
    }
}
