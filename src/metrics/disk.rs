//! The cache tiers in the Prometheus text format: memory and disk bytes,
//! objects and hit ratios, and the disk tier's own counters (written only
//! when a disk tier is configured; names in docs/disk-cache.md).

use super::prometheus::{family, seconds};
use super::CacheGauges;
use crate::cache::disk::{DiskSnapshot, LatencySnapshot, LATENCY_LE};
use std::fmt::Write as _;

pub(super) fn render(out: &mut String, cache: &CacheGauges, d: &DiskSnapshot) {
    let tiers: [(&str, &str, &str, u64, u64); 5] = [
        ("mediaedge_cache_tier_bytes", "gauge", "Bytes held by each cache tier.", cache.bytes, d.bytes),
        (
            "mediaedge_cache_tier_capacity_bytes",
            "gauge",
            "Capacity of each cache tier.",
            cache.capacity_bytes,
            d.capacity_bytes,
        ),
        ("mediaedge_cache_tier_objects", "gauge", "Objects held by each cache tier.", cache.entries, d.objects),
        (
            "mediaedge_cache_tier_lookups_total",
            "counter",
            "Lookups in each tier (the disk is looked up on memory misses).",
            d.memory_hits + d.lookups,
            d.lookups,
        ),
        ("mediaedge_cache_tier_hits_total", "counter", "Hits in each cache tier.", d.memory_hits, d.hits),
    ];
    for (name, kind, help, memory, disk) in tiers {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name}{{tier=\"memory\"}} {memory}");
        let _ = writeln!(out, "{name}{{tier=\"disk\"}} {disk}");
    }
    family(out, "mediaedge_cache_tier_hit_ratio", "gauge", "Hits over lookups in each tier, since start.");
    let _ = writeln!(out, "mediaedge_cache_tier_hit_ratio{{tier=\"memory\"}} {}", d.memory_hit_ratio());
    let _ = writeln!(out, "mediaedge_cache_tier_hit_ratio{{tier=\"disk\"}} {}", d.disk_hit_ratio());

    family(
        out,
        "mediaedge_disk_writable",
        "gauge",
        "1 while the disk tier writes; 0 once a fault stopped it (memory only).",
    );
    let _ = writeln!(out, "mediaedge_disk_writable {}", u8::from(d.writable));
    family(out, "mediaedge_disk_admissions_refused_total", "counter", "Objects not written to disk, by reason.");
    for (reason, n) in
        [("queue_full", d.refused_queue), ("too_large", d.refused_size), ("not_writing", d.refused_failing)]
    {
        let _ = writeln!(out, "mediaedge_disk_admissions_refused_total{{reason=\"{reason}\"}} {n}");
    }
    family(out, "mediaedge_disk_errors_total", "counter", "Disk tier I/O errors, by operation.");
    let _ = writeln!(out, "mediaedge_disk_errors_total{{op=\"read\"}} {}", d.read_errors);
    let _ = writeln!(out, "mediaedge_disk_errors_total{{op=\"write\"}} {}", d.write_errors);
    let counters: [(&str, &str, u64); 14] = [
        ("mediaedge_disk_hit_bytes_total", "Body bytes of the disk hits.", d.hit_bytes),
        ("mediaedge_disk_promotions_total", "Objects promoted from disk into memory.", d.promotions),
        ("mediaedge_disk_writes_total", "Objects written to disk.", d.writes),
        ("mediaedge_disk_write_bytes_total", "Body bytes written to disk.", d.write_bytes),
        ("mediaedge_disk_read_bytes_total", "Body bytes read from disk.", d.read_bytes),
        ("mediaedge_disk_evictions_total", "Objects dropped from disk when their segment was reused.", d.evictions),
        (
            "mediaedge_disk_copied_forward_total",
            "Hot records copied forward from a segment about to be reused.",
            d.copied_forward,
        ),
        ("mediaedge_disk_write_backs_total", "Objects written to disk when memory evicted them.", d.write_backs),
        (
            "mediaedge_disk_streamed_total",
            "Objects too large for memory streamed to disk as their fill arrived.",
            d.streamed,
        ),
        (
            "mediaedge_disk_streams_given_up_total",
            "Streams to disk given up before their record was complete.",
            d.refused_stream,
        ),
        (
            "mediaedge_disk_released_total",
            "Records of objects held in memory, let go when their segment was reused.",
            d.released,
        ),
        (
            "mediaedge_disk_dropped_records_total",
            "Records dropped at start: torn or failing their checksum.",
            d.dropped,
        ),
        (
            "mediaedge_disk_checksum_failures_total",
            "Records that failed their checksum when read (dropped, fetched again).",
            d.checksum_failures,
        ),
        ("mediaedge_disk_reads_total", "Reads from disk (whole bodies or pieces).", d.reads),
    ];
    for (name, help, v) in counters {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    histogram(out, "mediaedge_disk_read_seconds", "Time of one disk read (a whole body or a piece).", &d.read_latency);
    histogram(out, "mediaedge_disk_write_seconds", "Time of one record written to disk.", &d.write_latency);
}

fn histogram(out: &mut String, name: &str, help: &str, h: &LatencySnapshot) {
    family(out, name, "histogram", help);
    for (le, n) in LATENCY_LE.iter().zip(h.buckets) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_sum {}", seconds(h.sum_us));
    let _ = writeln!(out, "{name}_count {}", h.count());
}
