//! The VOD trace of `benches/vod_trace.py` replayed through foyer's
//! `HybridCache` (memory + disk), for comparison with mediaedge's own tiers.
//! See README.md.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, EvictionConfig, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, LfuConfig, LruConfig, PsyncIoEngineConfig, S3FifoConfig, Source, Statistics, StorageFilter,
    StorageFilterCondition, StorageFilterResult,
};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, RngCore, SeedableRng};

type Cache = HybridCache<u32, Bytes>;

/// As pinned in Cargo.toml.
const FOYER: &str = "0.22.6";
const MIB: usize = 1 << 20;
const MISS: u8 = 1;
const MEMORY: u8 = 2;
const DISK: u8 = 3;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Knobs {
    segments: usize,
    seg_kib: usize,
    memory_mib: usize,
    disk_mib: usize,
    requests: usize,
    hit_requests: usize,
    clients: usize,
    zipf: f64,
    seed: u64,
    block_mib: usize,
    rate: f64,
}

/// Requests for each object (by foyer's hash of its key), counted as the
/// trace is replayed: the disk admission "second request" admits an object
/// once it has been requested twice, as mediaedge's `second-hit` does.
#[derive(Debug, Default, Clone)]
struct Requests(Arc<Mutex<HashMap<u64, u32>>>);

impl Requests {
    fn seen(&self, hash: u64) {
        *self.0.lock().unwrap().entry(hash).or_default() += 1;
    }
}

#[derive(Debug)]
struct SecondRequest(Requests);

impl StorageFilterCondition for SecondRequest {
    fn filter(&self, _: &Arc<Statistics>, hash: u64, _: usize) -> StorageFilterResult {
        match self.0 .0.lock().unwrap().get(&hash) {
            Some(n) if *n >= 2 => StorageFilterResult::Admit,
            _ => StorageFilterResult::Reject,
        }
    }
}

#[derive(Clone, Copy)]
enum Evict {
    Lfu,
    S3Fifo,
    Lru,
}

#[derive(Clone, Copy)]
struct Config {
    evict: Evict,
    policy: HybridCachePolicy,
    second: bool,
    block_mib: usize,
}

impl Config {
    fn name(&self) -> String {
        let evict = match self.evict {
            Evict::Lfu => "W-TinyLFU (Lfu)",
            Evict::S3Fifo => "S3-FIFO",
            Evict::Lru => "LRU",
        };
        let policy = match self.policy {
            HybridCachePolicy::WriteOnEviction => "on eviction",
            HybridCachePolicy::WriteOnInsertion => "on insertion",
        };
        let admit = if self.second { "second request" } else { "admit all" };
        format!("{evict} | {policy} | {admit} | {}", self.block_mib)
    }
}

async fn open(k: &Knobs, dir: &Path, memory: usize, c: Config, requests: &Requests) -> Cache {
    let evict: EvictionConfig = match c.evict {
        Evict::Lfu => LfuConfig::default().into(),
        Evict::S3Fifo => S3FifoConfig::default().into(),
        Evict::Lru => LruConfig::default().into(),
    };
    let device = FsDeviceBuilder::new(dir).with_capacity(k.disk_mib * MIB).build().expect("disk device");
    let mut engine = BlockEngineConfig::new(device).with_block_size(c.block_mib * MIB);
    if c.second {
        engine = engine.with_admission_filter(StorageFilter::new().with_condition(SecondRequest(requests.clone())));
    }
    HybridCacheBuilder::new()
        .with_policy(c.policy)
        .with_flush_on_close(false)
        .memory(memory)
        .with_weighter(|_: &u32, v: &Bytes| v.len())
        .with_eviction_config(evict)
        .storage()
        .with_io_engine_config(PsyncIoEngineConfig::new())
        .with_engine_config(engine)
        .build()
        .await
        .expect("hybrid cache")
}

/// The catalogue: random bytes, deterministic per object.
fn catalogue(k: &Knobs) -> Arc<Vec<Bytes>> {
    let objects = (0..k.segments)
        .map(|i| {
            let mut v = vec![0u8; k.seg_kib * 1024];
            StdRng::seed_from_u64(k.seed.wrapping_mul(1_000_003).wrapping_add(i as u64)).fill_bytes(&mut v);
            Bytes::from(v)
        })
        .collect();
    Arc::new(objects)
}

/// `trace` of vod_trace.py: Zipf(s) weights over ranks, ranks shuffled over
/// names, `n` draws.
fn trace(k: &Knobs, n: usize, seed: u64) -> Vec<u32> {
    let mut cum = Vec::with_capacity(k.segments);
    let mut acc = 0.0;
    for i in 0..k.segments {
        acc += 1.0 / ((i + 1) as f64).powf(k.zipf);
        cum.push(acc);
    }
    let mut names: Vec<u32> = (0..k.segments as u32).collect();
    names.shuffle(&mut StdRng::seed_from_u64(k.seed + 99));
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let x = rng.gen::<f64>() * acc;
            names[cum.partition_point(|c| *c < x).min(k.segments - 1)]
        })
        .collect()
}

/// The value must be the object: its length and bytes at a few places.
fn check(got: &Bytes, want: &Bytes, i: usize) {
    assert_eq!(got.len(), want.len(), "wrong length");
    let at = (i * 7919) % (want.len() - 64);
    for p in [0, want.len() / 2, want.len() - 1] {
        assert_eq!(got[p], want[p], "wrong byte at {p}");
    }
    assert_eq!(got[at..at + 64], want[at..at + 64], "wrong bytes at {at}");
}

/// CPU time of this process: user + system, and system alone.
fn cpu_split() -> (Duration, Duration) {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    (t(u.ru_utime) + t(u.ru_stime), t(u.ru_stime))
}

/// Space allocated to the files under `dir`, in MiB.
fn dir_mib(dir: &Path) -> f64 {
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = e.metadata().expect("metadata");
        bytes += if m.is_dir() { (dir_mib(&e.path()) * MIB as f64) as u64 } else { m.blocks() * 512 };
    }
    bytes as f64 / MIB as f64
}

/// `clients` tasks take the requests in order; each gets (awaiting a disk
/// read), and on a miss inserts the object (the origin fetch). With `rate`
/// above 0, request `i` starts no sooner than `i / rate` seconds in. Returns
/// the outcome per request, the wall time and the CPU time.
async fn replay(
    cache: &Cache,
    objects: &Arc<Vec<Bytes>>,
    items: &Arc<Vec<u32>>,
    clients: usize,
    rate: f64,
    requests: Option<&Requests>,
) -> (Vec<u8>, Duration, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let out: Arc<Vec<AtomicU8>> = Arc::new((0..items.len()).map(|_| AtomicU8::new(0)).collect());
    let (t0, c0) = (Instant::now(), cpu_split().0);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (cache, objects, items, next, out) =
                (cache.clone(), objects.clone(), items.clone(), next.clone(), out.clone());
            let requests = requests.cloned();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&key) = items.get(i) else { break };
                    if rate > 0.0 {
                        tokio::time::sleep_until((t0 + Duration::from_secs_f64(i as f64 / rate)).into()).await;
                    }
                    if let Some(r) = &requests {
                        r.seen(cache.memory().hash(&key));
                    }
                    let want = &objects[key as usize];
                    let outcome = match cache.get(&key).await.expect("get") {
                        Some(e) => {
                            check(e.value(), want, i);
                            match e.source() {
                                Source::Disk => DISK,
                                _ => MEMORY,
                            }
                        }
                        None => {
                            cache.insert(key, want.clone());
                            MISS
                        }
                    };
                    out[i].store(outcome, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    let (wall, used) = (t0.elapsed(), cpu_split().0 - c0);
    (out.iter().map(|o| o.load(Ordering::Relaxed)).collect(), wall, used)
}

fn count(outcomes: &[u8], what: u8) -> usize {
    outcomes.iter().filter(|o| **o == what).count()
}

async fn trace_rows(k: &Knobs, objects: &Arc<Vec<Bytes>>, root: &Path) {
    let items = Arc::new(trace(k, k.requests, k.seed));
    let total = k.segments * k.seg_kib / 1024;
    println!(
        "catalogue {} x {} KiB = {total} MiB, Zipf({}), {} requests, {} clients; memory {} MiB, disk {} MiB; \
         requests paced at {} req/s unless marked unpaced; figures over the second half\n",
        k.segments, k.seg_kib, k.zipf, k.requests, k.clients, k.memory_mib, k.disk_mib, k.rate
    );
    println!(
        "| memory eviction | disk write | disk admission | block MiB | object (= byte) hit ratio | memory hits \
         | disk hits | misses | disk written MiB | disk allocated MiB | req/s | CPU µs/req |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let (ev, ins) = (HybridCachePolicy::WriteOnEviction, HybridCachePolicy::WriteOnInsertion);
    let (b, rate) = (k.block_mib, k.rate);
    let rows = [
        (Evict::Lfu, ev, false, b, rate),
        (Evict::S3Fifo, ev, false, b, rate),
        (Evict::Lru, ev, false, b, rate),
        (Evict::Lfu, ev, true, b, rate),
        (Evict::S3Fifo, ev, true, b, rate),
        (Evict::Lfu, ins, false, b, rate),
        (Evict::Lfu, ins, true, b, rate),
        (Evict::Lfu, ev, false, 12, rate),
        (Evict::Lfu, ev, false, 4, rate),
        (Evict::Lfu, ev, false, b, 0.0),
        (Evict::Lfu, ins, true, b, 0.0),
    ];
    for (n, (evict, policy, second, block_mib, rate)) in rows.into_iter().enumerate() {
        let c = Config { evict, policy, second, block_mib };
        let dir = root.join(format!("trace-{n}"));
        let requests = Requests::default();
        let cache = open(k, &dir, k.memory_mib * MIB, c, &requests).await;
        let (out, wall, used) = replay(&cache, objects, &items, k.clients, rate, Some(&requests)).await;
        // Writes still queued when the replay ends are counted (not writes
        // the engine dropped).
        cache.storage().wait().await;
        let written = cache.statistics().disk_write_bytes();
        let files = dir_mib(&dir);
        cache.close().await.expect("close");
        let half = &out[out.len() / 2..];
        let (m, d, x) = (count(half, MEMORY), count(half, DISK), count(half, MISS));
        let unpaced = if rate > 0.0 { "" } else { ", unpaced" };
        println!(
            "| {}{unpaced} | {:.3} | {m} | {d} | {x} | {:.0} | {files:.0} | {:.0} | {:.0} |",
            c.name(),
            (m + d) as f64 / half.len() as f64,
            written as f64 / MIB as f64,
            out.len() as f64 / wall.as_secs_f64(),
            used.as_secs_f64() * 1e6 / out.len() as f64
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}

async fn disk_hit_rows(k: &Knobs, objects: &Arc<Vec<Bytes>>, root: &Path) {
    let n = k.segments.min(k.disk_mib * 1024 * 6 / (k.seg_kib * 10));
    let mut rng = StdRng::seed_from_u64(k.seed + 7);
    let items: Arc<Vec<u32>> = Arc::new((0..k.hit_requests).map(|_| rng.gen_range(0..n as u32)).collect());
    println!(
        "\nDisk hits: {n} objects ({} MiB) inserted with 1 MiB of memory, disk writes settled, then {} gets \
         uniformly at random by {} tasks\n",
        n * k.seg_kib / 1024,
        k.hit_requests,
        k.clients
    );
    println!(
        "| disk write | on disk before gets | memory hits | disk hits | misses | disk written during gets MiB \
         | gets/s | CPU µs/get | of which system |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let policies =
        [("on eviction", HybridCachePolicy::WriteOnEviction), ("on insertion", HybridCachePolicy::WriteOnInsertion)];
    for (n_row, (name, policy)) in policies.into_iter().enumerate() {
        let c = Config { evict: Evict::Lfu, policy, second: false, block_mib: k.block_mib };
        let dir = root.join(format!("hits-{n_row}"));
        let cache = open(k, &dir, MIB, c, &Requests::default()).await;
        for key in 0..n as u32 {
            cache.insert(key, objects[key as usize].clone());
            // Below the engine's submit queue threshold (16 MiB by default),
            // over which entries are dropped rather than written.
            if key % 16 == 15 {
                cache.storage().wait().await;
            }
        }
        cache.storage().wait().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut stored = 0;
        for key in 0..n as u32 {
            if cache.storage().load(&key).await.map(|l| l.entry().is_some()).unwrap_or(false) {
                stored += 1;
            }
        }
        let (w0, s0) = (cache.statistics().disk_write_bytes(), cpu_split().1);
        let (out, wall, used) = replay(&cache, objects, &items, k.clients, 0.0, None).await;
        let written = cache.statistics().disk_write_bytes() - w0;
        let sys = cpu_split().1 - s0;
        cache.close().await.expect("close");
        println!(
            "| {name} | {stored} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            count(&out, MEMORY),
            count(&out, DISK),
            count(&out, MISS),
            written as f64 / MIB as f64,
            out.len() as f64 / wall.as_secs_f64(),
            used.as_secs_f64() * 1e6 / out.len() as f64,
            sys.as_secs_f64() * 1e6 / out.len() as f64
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// Close without flushing memory, reopen on the same directory: how much of
/// the disk tier comes back.
async fn restart_row(k: &Knobs, objects: &Arc<Vec<Bytes>>, root: &Path) {
    let items = Arc::new(trace(k, k.requests, k.seed));
    let c =
        Config { evict: Evict::Lfu, policy: HybridCachePolicy::WriteOnEviction, second: false, block_mib: k.block_mib };
    let dir = root.join("restart");
    let cache = open(k, &dir, k.memory_mib * MIB, c, &Requests::default()).await;
    replay(&cache, objects, &items, k.clients, k.rate, None).await;
    cache.storage().wait().await;
    let mut before = 0;
    for key in 0..k.segments as u32 {
        if cache.storage().load(&key).await.map(|l| l.entry().is_some()).unwrap_or(false) {
            before += 1;
        }
    }
    cache.close().await.expect("close");
    drop(cache);
    let cache = open(k, &dir, k.memory_mib * MIB, c, &Requests::default()).await;
    let mut after = 0;
    for key in 0..k.segments as u32 {
        if let Some(e) = cache.get(&key).await.expect("get") {
            check(e.value(), &objects[key as usize], key as usize);
            after += 1;
        }
    }
    cache.close().await.expect("close");
    println!(
        "\nRestart (defaults, trace paced, close without flushing memory, reopen on the same directory): {before} objects on \
         disk before the close, {after} of {} found after the reopen",
        k.segments
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::main]
async fn main() {
    let segments = env("SEGMENTS", 512);
    let seg_kib = env("SEG_KIB", 256);
    let k = Knobs {
        segments,
        seg_kib,
        memory_mib: env("MEMORY_MIB", 32),
        disk_mib: env("DISK_MIB", 96),
        requests: env("REQUESTS", 8000),
        hit_requests: env("HIT_REQUESTS", 6000),
        clients: env("CLIENTS", 8),
        zipf: env("ZIPF", 0.8),
        seed: env("SEED", 1),
        block_mib: env("BLOCK_MIB", 16),
        rate: env("RATE", 4000.0),
    };
    let sections = env("SECTIONS", "trace,hits,restart".to_string());
    let objects = catalogue(&k);
    let tmp = tempfile::tempdir().expect("tempdir");
    println!("foyer {FOYER} (HybridCache, block engine on a directory, buffered I/O)\n");
    if sections.contains("trace") {
        trace_rows(&k, &objects, tmp.path()).await;
    }
    if sections.contains("hits") {
        disk_hit_rows(&k, &objects, tmp.path()).await;
    }
    if sections.contains("restart") {
        restart_row(&k, &objects, tmp.path()).await;
    }
}
