//! Forwarding engines.
