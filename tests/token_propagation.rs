//! A whole HLS stream protected by one wildcard custom policy plays in a
//! player that keeps no cookies: the edge carries the viewer's signing
//! parameters into every URI of the manifests it serves.

mod common;
use common::*;
use mediaedge::security::policy;
use mediaedge::security::sign::{signed_url, PrivateKey, Terms};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
        panic!("this test makes RSA keys with openssl, which could not run ({e}); .ci/run installs it")
    });
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

struct Setup {
    dir: PathBuf,
    key: PrivateKey,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup() -> Setup {
    let dir = std::env::temp_dir().join(format!("mediaedge-tokens-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    openssl(&["genrsa", "-out", &p("k.pem"), "2048"]);
    openssl(&["rsa", "-in", &p("k.pem"), "-pubout", "-out", &p("k.pub.pem")]);
    let key = PrivateKey::from_pem(&std::fs::read_to_string(dir.join("k.pem")).unwrap()).unwrap();
    Setup { dir, key }
}

async fn protected_edge(s: &Setup) -> mediaedge::RunningEdge {
    protected_folder(s, &Path::new(env!("CARGO_MANIFEST_DIR")).join("test-media")).await
}

async fn protected_folder(s: &Setup, media: &Path) -> mediaedge::RunningEdge {
    let cfg = format!(
        "[[distributions]]\nid = \"ETOK\"\naliases = [\"*\"]\n\n[[distributions.key_groups]]\nid = \"kg\"\nkeys = [{{ id = \"KTEST\", public_key = \"{}\" }}]\n\n[[distributions.origins]]\nid = \"m\"\nfolder = \"{}\"\n\n[distributions.default_behavior]\norigin = \"m\"\ntrusted_key_groups = [\"kg\"]\npropagate_tokens = true\n",
        s.dir.join("k.pub.pem").display(),
        media.display()
    );
    edge(&cfg).await
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn sign(s: &Setup, e: &mediaedge::RunningEdge, path: &str, until: u64) -> String {
    let resource = format!("http://{}/hls-ts/*", e.addr());
    let terms = Terms::Custom { policy: policy::custom(&resource, until, None, None) };
    signed_url(&format!("http://{}{path}", e.addr()), "KTEST", &s.key, &terms).unwrap()
}

#[tokio::test]
async fn manifests_carry_the_viewers_signing_parameters_into_every_uri() {
    let s = setup();
    let e = protected_edge(&s).await;
    let c = client();
    let master_url = sign(&s, &e, "/hls-ts/master.m3u8", now() + 600);
    let (st, _, h, body) = get(&c, &master_url, &[]).await;
    assert_eq!(st, 200);
    assert_eq!(h.get("cache-control").unwrap(), "private, no-cache");
    let master = String::from_utf8(body.to_vec()).unwrap();
    let tokens = master_url.split_once('?').unwrap().1;
    let variant = master.lines().find(|l| !l.starts_with('#') && !l.is_empty()).unwrap();
    assert!(variant.ends_with(tokens), "{variant}");
    // The variant playlist, fetched as a player resolves it, lists tokenised segments.
    let (st, _, _, body) = get(&c, &url(&e, &format!("/hls-ts/{variant}")), &[]).await;
    assert_eq!(st, 200);
    let media = String::from_utf8(body.to_vec()).unwrap();
    let segment = media.lines().find(|l| !l.starts_with('#') && !l.is_empty()).unwrap();
    assert!(segment.contains("Signature="), "{segment}");
    let dir = variant.split('/').next().unwrap();
    assert_eq!(get(&c, &url(&e, &format!("/hls-ts/{dir}/{segment}")), &[]).await.0, 200);
    // Without the parameters a segment is refused.
    let bare = segment.split('?').next().unwrap();
    assert_eq!(get(&c, &url(&e, &format!("/hls-ts/{dir}/{bare}")), &[]).await.0, 403);
    // The stored copy is the origin's: an unsigned-looking second viewer with
    // other tokens gets its own parameters, not the first viewer's.
    let other = sign(&s, &e, "/hls-ts/master.m3u8", now() + 900);
    let (_, _, _, body) = get(&c, &other, &[]).await;
    assert!(String::from_utf8_lossy(&body).contains(other.split_once('?').unwrap().1));
    assert!(!String::from_utf8_lossy(&body).contains(tokens));
}

fn ffmpeg_play(url: &str) -> (bool, usize, String) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i", url, "-map", "0:v:0", "-f", "framecrc", "-"])
        .output()
        .unwrap_or_else(|e| panic!("ffmpeg could not run ({e}); .ci/run installs it"));
    let frames = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with('#')).count();
    (out.status.success(), frames, String::from_utf8_lossy(&out.stderr).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_a_protected_stream_with_a_valid_signed_master_url_only() {
    let s = setup();
    let e = protected_edge(&s).await;
    let good = sign(&s, &e, "/hls-ts/master.m3u8", now() + 600);
    let (ok, frames, err) = tokio::task::spawn_blocking(move || ffmpeg_play(&good)).await.unwrap();
    assert!(ok, "ffmpeg failed: {err}");
    assert!(frames >= 490, "{frames} frames decoded");
    let expired = sign(&s, &e, "/hls-ts/master.m3u8", now() - 10);
    let (ok, frames, _) = tokio::task::spawn_blocking(move || ffmpeg_play(&expired)).await.unwrap();
    assert!(!ok || frames == 0, "an expired URL must not play ({frames} frames)");
}

// A malformed playlist whose parse adding tokens as text would change (found
// by fuzzing) is served exactly as the origin sent it, and counted; a sound
// one next to it still gets the tokens.
#[tokio::test]
async fn a_manifest_that_tokens_would_change_is_served_as_stored() {
    let s = setup();
    let folder = s.dir.join("hls-ts");
    std::fs::create_dir_all(&folder).unwrap();
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/hls");
    let broken = std::fs::read(seeds.join("found-hls-rewrite-a09cd8f4.m3u8")).unwrap();
    std::fs::write(folder.join("broken.m3u8"), &broken).unwrap();
    std::fs::copy(seeds.join("vod.m3u8"), folder.join("sound.m3u8")).unwrap();
    let e = protected_folder(&s, &s.dir).await;
    let c = client();
    let before = mediaedge::media::rewrite::refused();
    let (st, _, _, body) = get(&c, &sign(&s, &e, "/hls-ts/broken.m3u8", now() + 600), &[]).await;
    assert_eq!(st, 200);
    assert_eq!(body[..], broken[..], "the broken playlist is served unchanged");
    assert!(mediaedge::media::rewrite::refused() > before, "and counted");
    let (st, _, _, body) = get(&c, &sign(&s, &e, "/hls-ts/sound.m3u8", now() + 600), &[]).await;
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("Signature="), "a sound playlist gets tokens");
}
