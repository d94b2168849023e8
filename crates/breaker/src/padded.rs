//! A value alone on its cache line(s), so a word every call writes does not
//! slow down readers of its neighbours (false sharing).

use std::ops::Deref;

/// 128 bytes: two 64-byte lines, since x86 prefetches lines in pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(T);

impl<T> CachePadded<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(value)
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
