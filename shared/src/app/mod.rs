//! The application layer: who may act, then load → decide → commit, one function
//! per command. The HTTP edge (and anything else that takes commands) only parses,
//! calls and renders.

pub mod caller;

pub use caller::{Caller, Role};
