//! How a ropo process runs a command: memory kept for reuse, warnings-only logging, and every
//! error or panic reported as one `error: …` line with a non-zero exit.

use std::process::ExitCode;

use crate::CmdResult;

/// mimalloc keeps freed memory for reuse. With the system allocator (glibc) every large
/// buffer of a training step (attention scores, logits) is a fresh `mmap` whose pages are
/// faulted in and zeroed on first touch; that cost a third to a half of a CPU step
/// (`docs/performance.md`). Every binary that links this crate (`ropo`, `xtask`) allocates
/// with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of `mimalloc.h` (the option after `mi_option_eager_commit_delay`,
/// 14, in mimalloc 2 and 3; the Rust bindings leave it unnamed).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Prepares the process before it parses its command line: mimalloc never hands freed pages
/// back to the system (a training step frees and re-allocates the same large buffers every
/// step, and pages given back are faulted in and zeroed again: 14% of an epoch on HH pairs,
/// `docs/performance.md`); logging at warnings only, so that burn-communication's INFO lines
/// do not take stdout; and the panic hook of [`run_reporting_errors`].
pub fn set_up() {
    // SAFETY: sets a plain integer option; mimalloc reads options at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .try_init();
    std::panic::set_hook(Box::new(keep_panic));
}

/// Runs `command`: its error, or a panic that reaches here (a bug), becomes one `error: …`
/// line on stderr and a failing exit code. A reader that closed stdout early (`| head`) has
/// what it wanted, and the command succeeds.
pub fn run_reporting_errors(command: impl FnOnce() -> CmdResult) -> ExitCode {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(command))
        .unwrap_or_else(|_| Err(last_panic().into()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if stdout_closed() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The message, place and (under `RUST_BACKTRACE`) backtrace of the last panic.
static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// The panic hook: records the panic instead of printing it. A panic that reaches
/// [`run_reporting_errors`] is a bug and is reported there as one `error: internal error …`
/// line (with the backtrace under `RUST_BACKTRACE`); one that a library raises on bad input and
/// ropo catches where it calls it (the tokenizers crate on some malformed `tokenizer.json`)
/// becomes that call's error and prints nothing of its own.
fn keep_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = info
        .payload()
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| info.payload().downcast_ref::<&str>().copied())
        .unwrap_or("no message");
    let place = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let backtrace = std::backtrace::Backtrace::capture();
    let trace = match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
        _ => String::new(),
    };
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = format!("internal error{place}: {message} (a bug; please report it){trace}");
    }
}

/// Whether the last panic was `println!` failing on a closed stdout (a broken pipe).
fn stdout_closed() -> bool {
    let last = last_panic();
    last.contains("failed printing to stdout") && last.contains("Broken pipe")
}

/// The panic recorded by [`keep_panic`].
fn last_panic() -> String {
    LAST_PANIC
        .lock()
        .map(|last| last.clone())
        .unwrap_or_else(|_| "internal error".into())
}
