//! Known differences between the shim and the kernel, each with its reason. A difference is
//! skipped only when one entry here names it exactly (the step it happens at and both
//! traces); nothing silences a whole class.

use crate::gen::Step;

/// The first step at which the two traces differ.
pub struct Diff<'a> {
    /// The step (`None` for the set-up lines).
    pub step: Option<&'a Step>,
    /// The shim's trace line.
    pub shim: &'a str,
    /// The kernel's trace line.
    pub kernel: &'a str,
}

/// One known difference.
pub struct Known {
    /// Its name, printed when it is skipped.
    pub name: &'static str,
    /// Why it is not fixed.
    pub reason: &'static str,
    /// Whether a difference is this one.
    pub matches: fn(&Diff<'_>) -> bool,
}

/// The list. Issue 17's item 5 (command payloads cut by the end of the write buffer: the
/// kernel reads past the buffer) is not generated at all, so it needs no entry.
pub const KNOWN: &[Known] = &[];

/// The known difference `d` is, if any.
pub fn known(d: &Diff<'_>) -> Option<&'static Known> {
    KNOWN.iter().find(|k| (k.matches)(d))
}
