//! Ctrl-C as a request, not a kill: long loops (generation, training) poll `requested()`
//! and stop at a clean point; a second Ctrl-C while nothing polls exits as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the handler once per process; hosts that own SIGINT (a REPL) call it too.
pub fn install() {
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                // Asked twice: the loop is not listening, so leave now.
                std::process::exit(130);
            }
        });
    });
}

/// True once Ctrl-C was pressed since the last `clear`.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Forgets a handled Ctrl-C.
pub fn clear() {
    REQUESTED.store(false, Ordering::SeqCst);
}
