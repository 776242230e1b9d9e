//! Fixed-capacity packet bursts (defined in the memory layer, re-exported here).

pub use ferrovia_memory::burst::{Burst, MAX_BURST};
