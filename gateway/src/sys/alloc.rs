//! Counts heap allocations per thread, so a lane can show that serving requests allocates
//! nothing: the process's global allocator is the system allocator plus one thread-local
//! increment per allocation (and per reallocation). Frees are not counted.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

/// The system allocator, counting.
pub struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: during thread teardown the counter may already be gone; that allocation is
    // simply not counted.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as it does for `System`; the counter is a const-initialised
// thread-local `Cell` without a destructor, whose access never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see the impl's comment).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap allocations made by the calling thread so far.
pub fn thread_allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_of_this_thread_are_counted_and_others_are_not() {
        let before = thread_allocations();
        let boxed = std::hint::black_box(Box::new([0u8; 64]));
        assert_eq!(thread_allocations(), before + 1);
        drop(boxed);
        let before = thread_allocations();
        std::thread::spawn(|| std::hint::black_box(vec![1u8; 10]))
            .join()
            .unwrap();
        // Spawning allocates on this thread; the vector was counted on the other thread only.
        let here = thread_allocations() - before;
        let other = std::thread::spawn(|| {
            let before = thread_allocations();
            let v = std::hint::black_box(vec![1u8; 10]);
            let after = thread_allocations();
            drop(v);
            after - before
        })
        .join()
        .unwrap();
        assert_eq!(other, 1);
        assert!(here >= 1);
    }
}
