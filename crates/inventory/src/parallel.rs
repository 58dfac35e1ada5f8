//! An order-preserving parallel map over the machine's cores, for the
//! loader's independent per-document and per-object work. Results come back
//! in input order, so output is deterministic.

/// `min_per_thread`: below this many items per thread, threads cost more
/// than they save (it depends on how much work one item is).
pub fn map_in_order<T: Send, U: Send>(
    items: Vec<T>,
    min_per_thread: usize,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(items.len() / min_per_thread.max(1))
        .max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let part: Vec<T> = items.by_ref().take(per_thread).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || part.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(results) => results,
                // A panic in `f` is a bug; re-raise it on the caller's thread
                // rather than losing results silently.
                Err(payload) => std::panic::resume_unwind(payload),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order() {
        let items: Vec<usize> = (0..10_000).collect();
        let out = super::map_in_order(items, 1, |x| x * 2);
        assert!(out.iter().enumerate().all(|(i, &x)| x == i * 2));
        assert!(super::map_in_order(Vec::<u8>::new(), 1, |x| x).is_empty());
    }

    #[test]
    #[should_panic(expected = "item 70")]
    fn a_panic_in_a_worker_is_not_swallowed() {
        super::map_in_order((0..100).collect(), 1, |i: u32| {
            assert!(i != 70, "item 70");
            i
        });
    }
}
