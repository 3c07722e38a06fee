//! A bump allocator for guardrails and provider adapters: allocation is a pointer bump and
//! `free` only counts. It starts in the memory the module already has (the build links with
//! 1 MiB of initial memory) so a typical call never grows memory, which on a pooled instance
//! costs a system call and page faults. When that runs out it grows memory like any
//! allocator, up to the host's cap.
//!
//! It counts live allocations, and when the count drops to zero (every allocation freed: the
//! end of a call of a plugin that keeps nothing, once the host's post-return has freed the
//! results) the whole heap is free again and the next allocation starts at its base. So a
//! `stateless` plugin's warm instance (one the host keeps between calls) reuses the same
//! memory call after call instead of bumping through it; a plugin that keeps something
//! (a `static` set in `configure`, a leaked buffer) keeps the count above zero and bumps on,
//! which is safe, only not reclaimed (the host replaces a warm instance after 10,000 calls).
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
    state: UnsafeCell<State>,
}

struct State {
    /// The next free byte; 0 until the first allocation.
    next: usize,
    /// The end of memory.
    end: usize,
    /// Allocations not yet freed.
    live: usize,
}

// SAFETY: plugins are single-threaded WebAssembly instances.
unsafe impl Sync for BumpAlloc {}

impl BumpAlloc {
    pub const fn new() -> Self {
        BumpAlloc {
            state: UnsafeCell::new(State {
                next: 0,
                end: 0,
                live: 0,
            }),
        }
    }
}

impl Default for BumpAlloc {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the heap starts: the end of the module's static data.
fn heap_base() -> usize {
    &raw const __heap_base as usize
}

unsafe impl GlobalAlloc for BumpAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded; no reentrancy (nothing here allocates).
        let st = unsafe { &mut *self.state.get() };
        if st.next == 0 {
            st.next = heap_base();
            st.end = core::arch::wasm32::memory_size(0) * PAGE;
        }
        let start = (st.next + layout.align() - 1) & !(layout.align() - 1);
        let Some(stop) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if stop > st.end {
            let pages = (stop - st.end).div_ceil(PAGE);
            if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                return core::ptr::null_mut();
            }
            st.end += pages * PAGE;
        }
        st.next = stop;
        st.live += 1;
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let st = unsafe { &mut *self.state.get() };
        st.live -= 1;
        if st.live == 0 {
            // Nothing is allocated: the whole heap is free.
            st.next = heap_base();
        } else if ptr as usize + layout.size() == st.next {
            // Give back the most recent allocation (a common pattern: a temporary buffer).
            st.next = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let st = unsafe { &mut *self.state.get() };
        // Grow the most recent allocation in place when it fits.
        if ptr as usize + layout.size() == st.next && ptr as usize + new_size <= st.end {
            st.next = ptr as usize + new_size;
            return ptr;
        }
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                // The old block is no longer live (it is not the most recent one, so this only
                // counts it).
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}
