use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "mediaedge-state-test-{}-{}-{}",
            std::process::id(),
            now_ms(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        TempDir(std::env::temp_dir().join(name))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| p.to_string()).collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<StateStore>();
}

#[test]
fn distribution_lifecycle_with_etags() {
    let dir = TempDir::new();
    let store = StateStore::open(&dir.0).unwrap();
    assert!(dir.0.join("state.redb").is_file());
    assert!(store.distributions().unwrap().is_empty());

    let b = store.create_distribution("b", "doc b").unwrap();
    let a = store.create_distribution("a", "doc a").unwrap();
    assert_eq!(a.etag.len(), 14);
    assert!(a.etag.starts_with('E'));
    assert!(a.etag[1..].chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    assert_eq!(a.created_ms, a.modified_ms);
    assert!(matches!(store.create_distribution("a", "again"), Err(StateError::AlreadyExists)));

    let listed = store.distributions().unwrap();
    assert_eq!(listed, vec![a.clone(), b.clone()]);
    assert_eq!(store.distribution("a").unwrap(), Some(a.clone()));
    assert_eq!(store.distribution("zz").unwrap(), None);

    match store.update_distribution("a", "doc a2", Some("EWRONGWRONGWRO")) {
        Err(StateError::EtagMismatch { current }) => assert_eq!(current, a.etag),
        other => panic!("expected EtagMismatch, got {other:?}"),
    }
    let a2 = store.update_distribution("a", "doc a2", Some(&a.etag)).unwrap();
    assert_ne!(a2.etag, a.etag);
    assert_eq!(a2.document, "doc a2");
    assert_eq!(a2.created_ms, a.created_ms);
    assert!(a2.modified_ms >= a.modified_ms);
    let a3 = store.update_distribution("a", "doc a3", None).unwrap();
    assert_eq!(store.distribution("a").unwrap(), Some(a3.clone()));
    assert!(matches!(store.update_distribution("zz", "x", None), Err(StateError::NotFound)));

    assert!(matches!(store.delete_distribution("a", Some(&a2.etag)), Err(StateError::EtagMismatch { .. })));
    store.delete_distribution("a", Some(&a3.etag)).unwrap();
    assert_eq!(store.distribution("a").unwrap(), None);
    assert!(matches!(store.delete_distribution("a", None), Err(StateError::NotFound)));
    store.delete_distribution("b", None).unwrap();
    assert!(store.distributions().unwrap().is_empty());
}

#[test]
fn every_change_survives_reopening() {
    let dir = TempDir::new();
    let (kept, inv, done) = {
        let store = StateStore::open(&dir.0).unwrap();
        store.create_distribution("kept", "one").unwrap();
        let kept = store.update_distribution("kept", "two", None).unwrap();
        store.create_distribution("gone", "x").unwrap();
        store.delete_distribution("gone", None).unwrap();
        let (inv, _) = store.create_invalidation("kept", "ref-1", &paths(&["/a", "/b*"])).unwrap();
        let (done, _) = store.create_invalidation("kept", "ref-2", &paths(&["/c"])).unwrap();
        let done = store.complete_invalidation("kept", &done.id).unwrap();
        store
            .add_usage(&[(
                "kept".to_string(),
                "2024-01-01".to_string(),
                UsageCounters { bytes_to_viewers: 10, ..UsageCounters::default() },
            )])
            .unwrap();
        store.seed_distribution("seeded", "s", "h1", "file").unwrap();
        (kept, inv, done)
    };

    let store = StateStore::open(&dir.0).unwrap();
    assert_eq!(store.distribution("kept").unwrap(), Some(kept));
    assert_eq!(store.distribution("gone").unwrap(), None);
    assert_eq!(store.invalidation("kept", &inv.id).unwrap(), Some(inv.clone()));
    assert_eq!(store.invalidation("kept", &done.id).unwrap(), Some(done));
    assert_eq!(store.in_progress_invalidations().unwrap(), vec![inv.clone()]);
    let (again, new) = store.create_invalidation("kept", "ref-1", &paths(&["/a", "/b*"])).unwrap();
    assert!(!new);
    assert_eq!(again, inv);
    let usage = store.usage(Some("kept"), "2024-01-01", "2024-01-01").unwrap();
    assert_eq!(usage[0].2.bytes_to_viewers, 10);
    assert_eq!(store.seed_distribution("seeded", "s", "h1", "file").unwrap(), SeedOutcome::Kept);
}

#[test]
fn seeding_respects_the_stores_state() {
    let dir = TempDir::new();
    let store = StateStore::open(&dir.0).unwrap();
    assert_eq!(store.seed_distribution("d", "v1", "h1", "file").unwrap(), SeedOutcome::Inserted);
    let first = store.distribution("d").unwrap().unwrap();
    assert_eq!(first.document, "v1");

    // The same file version again: nothing changes, not even the etag.
    assert_eq!(store.seed_distribution("d", "v1", "h1", "file").unwrap(), SeedOutcome::Kept);
    assert_eq!(store.distribution("d").unwrap(), Some(first.clone()));

    // A change through the API survives a start with the same file.
    let edited = store.update_distribution("d", "api", None).unwrap();
    assert_eq!(store.seed_distribution("d", "v1", "h1", "file").unwrap(), SeedOutcome::Kept);
    assert_eq!(store.distribution("d").unwrap(), Some(edited));

    // A new file version wins over the store.
    assert_eq!(store.seed_distribution("d", "v2", "h2", "file").unwrap(), SeedOutcome::Updated);
    let second = store.distribution("d").unwrap().unwrap();
    assert_eq!(second.document, "v2");
    assert_eq!(second.created_ms, first.created_ms);
    assert_ne!(second.etag, first.etag);

    // Deleted through the API: the same file version does not bring it back...
    store.delete_distribution("d", None).unwrap();
    assert_eq!(store.seed_distribution("d", "v2", "h2", "file").unwrap(), SeedOutcome::Kept);
    assert_eq!(store.distribution("d").unwrap(), None);
    // ...but a changed file version does.
    assert_eq!(store.seed_distribution("d", "v3", "h3", "file").unwrap(), SeedOutcome::Inserted);
    assert_eq!(store.distribution("d").unwrap().unwrap().document, "v3");
}

#[test]
fn seed_marks_name_their_source_and_outlive_a_deletion() {
    let dir = TempDir::new();
    let store = StateStore::open(&dir.0).unwrap();
    store.seed_distribution("b", "vb", "hb", "--origin").unwrap();
    store.seed_distribution("a", "va", "ha", "the built-in demo").unwrap();
    store.delete_distribution("b", None).unwrap();
    let marks = store.seed_marks().unwrap();
    let got: Vec<(&str, &str, Option<&str>)> =
        marks.iter().map(|m| (m.id.as_str(), m.hash.as_str(), m.source.as_deref())).collect();
    assert_eq!(got, vec![("a", "ha", Some("the built-in demo")), ("b", "hb", Some("--origin"))]);
}

#[test]
fn caller_references_are_idempotent() {
    let dir = TempDir::new();
    let store = StateStore::open(&dir.0).unwrap();
    assert!(matches!(store.create_invalidation("none", "r", &paths(&["/a"])), Err(StateError::NotFound)));
    store.create_distribution("d", "doc").unwrap();
    store.create_distribution("e", "doc").unwrap();

    let (first, new) = store.create_invalidation("d", "r", &paths(&["/a", "/b"])).unwrap();
    assert!(new);
    assert!(first.id.starts_with('I') && first.id.len() == 14);
    assert_eq!(first.status, InvalidationStatus::InProgress);
    assert_eq!(first.completed_ms, None);

    let (again, new) = store.create_invalidation("d", "r", &paths(&["/a", "/b"])).unwrap();
    assert!(!new);
    assert_eq!(again, first);

    // Other order is other paths.
    match store.create_invalidation("d", "r", &paths(&["/b", "/a"])) {
        Err(StateError::CallerReferenceReused { existing }) => assert_eq!(*existing, first),
        other => panic!("expected CallerReferenceReused, got {other:?}"),
    }
    // Caller references are per distribution.
    let (other, new) = store.create_invalidation("e", "r", &paths(&["/b", "/a"])).unwrap();
    assert!(new);
    assert_ne!(other.id, first.id);

    // Deleting a distribution forgets its invalidations and caller references.
    std::thread::sleep(std::time::Duration::from_millis(3));
    store.delete_distribution("d", None).unwrap();
    assert_eq!(store.invalidation("d", &first.id).unwrap(), None);
    store.create_distribution("d", "doc").unwrap();
    let (fresh, new) = store.create_invalidation("d", "r", &paths(&["/c"])).unwrap();
    assert!(new);
    assert_ne!(fresh.id, first.id);
    assert_eq!(store.in_progress_invalidations().unwrap(), vec![other, fresh]);
}

#[test]
fn in_progress_limits() {
    let dir = TempDir::new();
    let store = StateStore::open(&dir.0).unwrap();
    store.create_distribution("d", "doc").unwrap();
    store.create_distribution("e", "doc").unwrap();

    // Individual paths: 3000 in progress at most.
    let (big, _) = store.create_invalidation("d", "big", &numbered("/p", 2999)).unwrap();
    let (one, _) = store.create_invalidation("d", "one", &numbered("/q", 1)).unwrap();
    match store.create_invalidation("d", "over", &numbered("/r", 1)) {
        Err(StateError::TooManyInProgress { wildcard: false, in_progress: 3000, requested: 1, limit: 3000 }) => {}
        other => panic!("expected the path limit, got {other:?}"),
    }
    // Another distribution has its own room.
    store.create_invalidation("e", "big", &numbered("/p", 3000)).unwrap();
    // Completed invalidations do not count.
    store.complete_invalidation("d", &one.id).unwrap();
    store.create_invalidation("d", "over", &numbered("/r", 1)).unwrap();

    // Wildcards: 15 in progress at most, checked before the path limit.
    store.create_invalidation("d", "w1", &numbered("/w*", 15)).unwrap();
    match store.create_invalidation("d", "w2", &[String::from("/x*"), String::from("/y")]) {
        Err(StateError::TooManyInProgress { wildcard: true, in_progress: 15, requested: 1, limit: 15 }) => {}
        other => panic!("expected the wildcard limit, got {other:?}"),
    }
    store.complete_invalidation("d", &big.id).unwrap();
    match store.create_invalidation("d", "w2", &numbered("/x*", 1)) {
        Err(StateError::TooManyInProgress { wildcard: true, .. }) => {}
        other => panic!("expected the wildcard limit, got {other:?}"),
    }
    let w1 = store.invalidations("d", 100).unwrap().into_iter().find(|i| i.caller_reference == "w1").unwrap();
    store.complete_invalidation("d", &w1.id).unwrap();
    store.create_invalidation("d", "w2", &numbered("/x*", 15)).unwrap();

    // Completing twice is harmless; unknown ids are NotFound.
    let again = store.complete_invalidation("d", &w1.id).unwrap();
    assert_eq!(again.status, InvalidationStatus::Completed);
    assert!(again.completed_ms.is_some());
    assert!(matches!(store.complete_invalidation("d", "INOSUCHIDXXXXX"), Err(StateError::NotFound)));
}

#[test]
fn invalidation_listings() {
    let dir = TempDir::new();
    let store = StateStore::open(&dir.0).unwrap();
    store.create_distribution("d", "doc").unwrap();
    store.create_distribution("e", "doc").unwrap();
    let mut made = Vec::new();
    for (i, distribution) in ["d", "e", "d", "d"].iter().enumerate() {
        let (record, _) = store.create_invalidation(distribution, &format!("r{i}"), &paths(&["/a"])).unwrap();
        made.push(record);
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let listed = store.invalidations("d", 10).unwrap();
    assert_eq!(listed, vec![made[3].clone(), made[2].clone(), made[0].clone()]);
    assert_eq!(store.invalidations("d", 2).unwrap(), listed[..2].to_vec());
    assert!(store.invalidations("nothing", 10).unwrap().is_empty());

    let done = store.complete_invalidation("d", &made[2].id).unwrap();
    assert_eq!(store.invalidation("d", &made[2].id).unwrap(), Some(done));
    assert_eq!(store.invalidation("e", &made[2].id).unwrap(), None);
    assert_eq!(store.in_progress_invalidations().unwrap(), vec![made[0].clone(), made[1].clone(), made[3].clone()]);
}

#[test]
fn usage_adds_up_by_distribution_and_day() {
    let dir = TempDir::new();
    let store = StateStore::open(&dir.0).unwrap();
    let counters = |viewers, requests| UsageCounters {
        bytes_to_viewers: viewers,
        bytes_to_origin: viewers / 2,
        http_requests: requests,
        https_requests: 1,
        invalidation_paths: 0,
    };
    let row = |d: &str, day: &str, c| (d.to_string(), day.to_string(), c);
    store
        .add_usage(&[
            row("a", "2024-02-28", counters(100, 1)),
            row("a", "2024-02-29", counters(10, 2)),
            row("b", "2024-02-29", counters(7, 3)),
            row("a", "2024-03-01", counters(1, 4)),
            row("b", "2024-03-02", UsageCounters::default()),
        ])
        .unwrap();
    store.add_usage(&[row("a", "2024-02-29", counters(5, 5))]).unwrap();

    let a = store.usage(Some("a"), "2024-02-29", "2024-03-01").unwrap();
    assert_eq!(
        a,
        vec![
            row(
                "a",
                "2024-02-29",
                UsageCounters {
                    bytes_to_viewers: 15,
                    bytes_to_origin: 7,
                    http_requests: 7,
                    https_requests: 2,
                    invalidation_paths: 0,
                }
            ),
            row("a", "2024-03-01", counters(1, 4)),
        ]
    );
    let all = store.usage(None, "2024-02-29", "2024-12-31").unwrap();
    let keys: Vec<(&str, &str)> = all.iter().map(|(d, day, _)| (d.as_str(), day.as_str())).collect();
    assert_eq!(keys, vec![("a", "2024-02-29"), ("a", "2024-03-01"), ("b", "2024-02-29")]);
    assert!(store.usage(None, "2024-03-02", "2024-03-01").unwrap().is_empty());

    let mut total = UsageCounters::default();
    assert!(total.is_zero());
    for (_, _, c) in &all {
        total.add(c);
    }
    assert_eq!(total.bytes_to_viewers, 23);
    assert!(!total.is_zero());

    // Invalidation paths are counted on today's row, and kept after a deletion.
    store.create_distribution("c", "doc").unwrap();
    store.create_invalidation("c", "r", &paths(&["/a", "/b", "/c*"])).unwrap();
    store.create_invalidation("c", "r", &paths(&["/a", "/b", "/c*"])).unwrap();
    store.delete_distribution("c", None).unwrap();
    let today = utc_day(now_ms() / 1000);
    let c = store.usage(Some("c"), "0000-00-00", "9999-99-99").unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].1, today);
    assert_eq!(c[0].2.invalidation_paths, 3);
}

#[test]
fn dates_in_utc() {
    assert_eq!(utc_day(0), "1970-01-01");
    assert_eq!(utc_day(1_700_000_000), "2023-11-14");
    assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    // Leap days and year ends.
    assert_eq!(utc_day(951_782_400), "2000-02-29");
    assert_eq!(utc_day(1_709_164_800), "2024-02-29");
    assert_eq!(rfc3339(1_735_689_599_000), "2024-12-31T23:59:59Z");
    assert_eq!(utc_day(1_735_689_600), "2025-01-01");
    assert_eq!(rfc3339(4_107_542_400_000), "2100-03-01T00:00:00Z");
    assert!(now_ms() > 1_700_000_000_000);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = TempDir::new();
    let first = StateStore::open(&dir.0).unwrap();
    match StateStore::open(&dir.0) {
        Err(StateError::Open(message)) => {
            assert!(message.contains("state.redb"), "{message}");
            assert!(message.contains("another mediaedge running") && message.contains("--state-dir"), "{message}");
        }
        Err(other) => panic!("expected StateError::Open, got {other:?}"),
        Ok(_) => panic!("the second open should fail"),
    }
    drop(first);
    StateStore::open(&dir.0).unwrap();
}

#[test]
fn an_unusable_file_is_an_open_error() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("state.redb"), b"not a database, just some text").unwrap();
    match StateStore::open(&dir.0) {
        Err(StateError::Open(message)) => assert!(message.contains("state.redb"), "{message}"),
        Err(other) => panic!("expected StateError::Open, got {other:?}"),
        Ok(_) => panic!("a text file is not a database"),
    }
}

#[test]
fn usage_spooled_while_suspended_is_added_once_by_the_next_holder() {
    let dir = TempDir::new();
    let store = StateStore::open(&dir.0).unwrap();
    let counters = UsageCounters { http_requests: 7, bytes_to_viewers: 700, ..Default::default() };
    let rows = vec![("d".to_string(), "2024-05-01".to_string(), counters)];
    store.suspend();
    assert!(matches!(store.add_usage(&rows), Err(StateError::Suspended)));
    store.spool_usage(&rows).unwrap();
    store.spool_usage(&rows).unwrap();
    // While suspended nothing is taken.
    assert!(matches!(store.take_spooled_usage(), Err(StateError::Suspended)));
    // A file that is not usage is set aside, not added.
    std::fs::write(dir.0.join("usage-spool/broken.json"), b"{not usage").unwrap();
    store.resume().unwrap();
    assert_eq!(store.take_spooled_usage().unwrap(), 2);
    assert_eq!(store.take_spooled_usage().unwrap(), 0, "each file is added once");
    let got = store.usage(Some("d"), "2024-05-01", "2024-05-01").unwrap();
    assert_eq!(got[0].2.http_requests, 14);
    assert_eq!(got[0].2.bytes_to_viewers, 1400);
    assert!(dir.0.join("usage-spool/broken.bad").exists());
}
