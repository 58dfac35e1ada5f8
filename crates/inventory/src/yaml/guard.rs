//! A panic inside the YAML parser becomes an error for that document, never
//! the end of the run. libyaml-safer 0.3 still has `panic!` sites that
//! libyaml answers differently (a tag right before `,` in a flow
//! collection); until it is fixed upstream, each document is parsed under
//! `catch_unwind`, and the panic hook stays quiet for panics raised there, so
//! the user sees one diagnostic instead of a backtrace.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static INSIDE_PARSER: Cell<bool> = const { Cell::new(false) };
}

/// Wraps the process's panic hook once: panics raised inside [`catch`] are
/// not printed; all others go to the previous hook unchanged.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !INSIDE_PARSER.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic in it comes back as its message.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    INSIDE_PARSER.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    INSIDE_PARSER.with(|c| c.set(false));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(catch(|| 7), Ok(7));
        let failed: Result<(), String> = catch(|| panic!("boom"));
        assert_eq!(failed, Err("boom".to_string()));
        // The flag is cleared again for panics elsewhere.
        assert!(!INSIDE_PARSER.with(Cell::get));
    }
}
