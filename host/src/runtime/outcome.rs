//! How a guest instance ended, as types: the runtime decides it once, when
//! the instance is dropped, and the request path and the metrics read it.

use std::sync::Arc;

/// Why an instance ended abnormally; [`TrapKind::as_str`] is the
/// `wasm_trap_kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// Interrupted past its deadline (epoch), or stuck past it.
    Timeout,
    /// Trapped after the memory limit refused to grow its memory.
    OutOfMemory,
    /// The guest's stack overflowed.
    StackOverflow,
    /// Out-of-bounds memory access.
    MemoryOutOfBounds,
    /// Misaligned atomic access.
    HeapMisaligned,
    /// Out-of-bounds table access.
    TableOutOfBounds,
    /// Indirect call to a null table entry.
    IndirectCallToNull,
    /// Indirect call with the wrong signature.
    BadSignature,
    /// Integer overflow.
    IntegerOverflow,
    /// Integer division by zero.
    IntegerDivisionByZero,
    /// Invalid float-to-integer conversion.
    BadConversionToInteger,
    /// `unreachable` (a Rust panic, an abort).
    Unreachable,
    /// Out of fuel.
    OutOfFuel,
    /// Another trap.
    Other,
    /// The host failed the instance (a host call returned an error).
    HostError,
}

impl TrapKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            TrapKind::Timeout => "timeout",
            TrapKind::OutOfMemory => "out_of_memory",
            TrapKind::StackOverflow => "stack_overflow",
            TrapKind::MemoryOutOfBounds => "memory_out_of_bounds",
            TrapKind::HeapMisaligned => "heap_misaligned",
            TrapKind::TableOutOfBounds => "table_out_of_bounds",
            TrapKind::IndirectCallToNull => "indirect_call_to_null",
            TrapKind::BadSignature => "bad_signature",
            TrapKind::IntegerOverflow => "integer_overflow",
            TrapKind::IntegerDivisionByZero => "integer_division_by_zero",
            TrapKind::BadConversionToInteger => "bad_conversion_to_integer",
            TrapKind::Unreachable => "unreachable",
            TrapKind::OutOfFuel => "out_of_fuel",
            TrapKind::Other => "other",
            TrapKind::HostError => "host_error",
        }
    }

    /// The kind of a wasmtime trap.
    pub fn of(trap: wasmtime::Trap) -> Self {
        use wasmtime::Trap;
        match trap {
            Trap::Interrupt => TrapKind::Timeout,
            Trap::StackOverflow => TrapKind::StackOverflow,
            Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
            Trap::HeapMisaligned => TrapKind::HeapMisaligned,
            Trap::TableOutOfBounds => TrapKind::TableOutOfBounds,
            Trap::IndirectCallToNull => TrapKind::IndirectCallToNull,
            Trap::BadSignature => TrapKind::BadSignature,
            Trap::IntegerOverflow => TrapKind::IntegerOverflow,
            Trap::IntegerDivisionByZero => TrapKind::IntegerDivisionByZero,
            Trap::BadConversionToInteger => TrapKind::BadConversionToInteger,
            Trap::UnreachableCodeReached => TrapKind::Unreachable,
            Trap::OutOfFuel => TrapKind::OutOfFuel,
            _ => TrapKind::Other,
        }
    }
}

impl std::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an instance ended.
#[derive(Debug, Clone)]
pub enum InstanceOutcome {
    /// It expired or was retired normally (or cancelled by the shutdown).
    Retired,
    /// It failed.
    Trapped {
        /// The kind.
        kind: TrapKind,
        /// The error text, for the log.
        detail: Arc<str>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_kinds_have_snake_case_labels() {
        assert_eq!(
            TrapKind::of(wasmtime::Trap::UnreachableCodeReached).as_str(),
            "unreachable"
        );
        assert_eq!(TrapKind::of(wasmtime::Trap::Interrupt), TrapKind::Timeout);
        assert_eq!(TrapKind::OutOfMemory.to_string(), "out_of_memory");
    }
}
