//! Cache-line prefetch hints for the ring and copy paths: the only place that issues them.

/// Starts loading the cache line at `p` (a hint: never faults, reads nothing).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 has no architectural effect and never faults, whatever `p` is.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts taking the cache line at `p` for writing (a hint, as [`prefetch`]).
#[inline(always)]
pub(crate) fn prefetch_for_write(p: *const u8) {
    // Written as asm: the intrinsic falls back to PREFETCHT0 unless the whole build targets
    // PRFCHW, yet every x86-64 CPU accepts the instruction (those without it run a NOP).
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHW has no architectural effect and never faults, whatever `p` is; it
    // touches no register but its address operand, no stack and no flags.
    unsafe {
        std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
