//! A bump allocator for plugins whose instances live for one call (guardrails, provider
//! adapters): allocation is a pointer bump, `free` does nothing, and the whole heap goes
//! away with the instance. It starts in the memory the module already has (the build links
//! with 2 MiB of initial memory) so a typical call never grows memory, which on a pooled
//! instance costs a system call and page faults. When that runs out it grows memory like
//! any allocator, up to the host's cap.
//!
//! Observers keep their instance across batches and use the standard allocator. Opt out with
//! the `system-alloc` feature.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const PAGE: usize = 65536;

unsafe extern "C" {
    /// The end of the module's static data, placed by wasm-ld.
    static __heap_base: u8;
}

pub struct BumpAlloc {
    /// (next free byte, end of memory); 0 until the first allocation.
    state: UnsafeCell<(usize, usize)>,
}

// SAFETY: plugins are single-threaded WebAssembly instances.
unsafe impl Sync for BumpAlloc {}

impl BumpAlloc {
    pub const fn new() -> Self {
        BumpAlloc {
            state: UnsafeCell::new((0, 0)),
        }
    }
}

impl Default for BumpAlloc {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for BumpAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded; no reentrancy (nothing here allocates).
        let (next, end) = unsafe { &mut *self.state.get() };
        if *next == 0 {
            *next = &raw const __heap_base as usize;
            *end = core::arch::wasm32::memory_size(0) * PAGE;
        }
        let start = (*next + layout.align() - 1) & !(layout.align() - 1);
        let Some(stop) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if stop > *end {
            let pages = (stop - *end).div_ceil(PAGE);
            if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                return core::ptr::null_mut();
            }
            *end += pages * PAGE;
        }
        *next = stop;
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Give back the most recent allocation (a common pattern: a temporary buffer).
        let (next, _) = unsafe { &mut *self.state.get() };
        if ptr as usize + layout.size() == *next {
            *next = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (next, end) = unsafe { &mut *self.state.get() };
        // Grow the most recent allocation in place when it fits.
        if ptr as usize + layout.size() == *next && ptr as usize + new_size <= *end {
            *next = ptr as usize + new_size;
            return ptr;
        }
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
        }
        new
    }
}
