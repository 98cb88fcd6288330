//! Origin groups over real sockets: a primary and a secondary origin, failover
//! on status codes, refused connections and timeouts, passive ejection of a
//! primary that keeps failing, and the counters that show it.

mod common;
use common::*;
use std::time::Duration;

/// A distribution whose default behavior goes to the group `g` of `primary`
/// then `secondary`, with `group` lines added to the group.
fn config(primary: &str, secondary: &str, group: &str) -> String {
    format!(
        "[[distributions]]\nid = \"EFAIL\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"primary\"\nurl = \"{primary}\"\nread_timeout = \"500ms\"\n\
         connection_attempts = 1\n\n\
         [[distributions.origins]]\nid = \"secondary\"\nurl = \"{secondary}\"\nread_timeout = \"5s\"\n\n\
         [[distributions.origin_groups]]\nid = \"g\"\nmembers = [\"primary\", \"secondary\"]\n{group}\n\
         [distributions.default_behavior]\norigin = \"g\"\nallowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", \"PUT\", \"POST\", \"PATCH\", \"DELETE\"]\n"
    )
}

async fn counter(e: &Controlled, name: &str) -> u64 {
    metric_sample(e, &format!("{name}{{distribution=\"EFAIL\"}}")).await
}

fn segment(body: &str) -> Script {
    Script::ok(body.to_string()).header("cache-control", "max-age=60")
}

/// An address nothing listens on (bound, then closed): connections are refused.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// A server that accepts connections and never answers.
async fn blackhole() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_primary_answering_503_fails_over_and_the_answer_is_cached() {
    let primary = TestOrigin::start().await;
    let secondary = TestOrigin::start().await;
    primary.set("/seg1.m4s", Script::ok("busy").status(503));
    secondary.set("/seg1.m4s", segment("from-secondary"));
    let state = TempDir::new("failover-503");
    let e = controlled(&config(&primary.url(), &secondary.url(), ""), state.path()).await;
    let c = client();
    let (s, x, _, b) = get(&c, &e.url("/seg1.m4s"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Miss", &b"from-secondary"[..]));
    // Cached like any answer: the next viewer asks nobody.
    let (s, x, _, _) = get(&c, &e.url("/seg1.m4s"), &[]).await;
    assert_eq!((s, x.as_str()), (200, "Hit"));
    assert_eq!((primary.hits("/seg1.m4s"), secondary.hits("/seg1.m4s")), (1, 1));
    assert_eq!(counter(&e, "mediaedge_origin_failovers_total").await, 1);
    // A status outside the failover list (here 404 by default) is the answer.
    primary.set("/gone.m4s", Script::ok("no").status(404));
    secondary.set("/gone.m4s", segment("never asked"));
    let (s, _, _, b) = get(&c, &e.url("/gone.m4s"), &[]).await;
    assert_eq!((s, &b[..]), (404, &b"no"[..]));
    assert_eq!(secondary.hits("/gone.m4s"), 0);
}

#[tokio::test]
async fn a_refused_or_silent_primary_fails_over() {
    let secondary = TestOrigin::start().await;
    secondary.set("/a.m4s", segment("a"));
    let e = edge(&config(&dead_url(), &secondary.url(), "")).await;
    let (s, _, _, b) = get(&client(), &url(&e, "/a.m4s"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"a"[..]), "refused primary");

    // Accepts and never answers: after its read timeout (500 ms), the secondary.
    let (hole, _task) = blackhole().await;
    let e = edge(&config(&hole, &secondary.url(), "")).await;
    let (s, _, _, b) = get(&client(), &url(&e, "/a.m4s"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"a"[..]), "blackholed primary");
}

#[tokio::test]
async fn both_down_gives_the_error_not_a_hang() {
    let (hole, _task) = blackhole().await;
    let e = edge(&config(&dead_url(), &dead_url(), "")).await;
    let (s, _, _, _) = get(&client(), &url(&e, "/x.m4s"), &[]).await;
    assert_eq!(s, 502);
    // The last member's answer is the group's, whatever it is: a 503 stands.
    let secondary = TestOrigin::start().await;
    secondary.set("/y.m4s", Script::ok("down too").status(503));
    let e = edge(&config(&hole, &secondary.url(), "")).await;
    let (s, _, _, b) = get(&client(), &url(&e, "/y.m4s"), &[]).await;
    assert_eq!((s, &b[..]), (503, &b"down too"[..]));
}

#[tokio::test]
async fn only_get_head_and_options_fail_over() {
    let primary = TestOrigin::start().await;
    let secondary = TestOrigin::start().await;
    primary.set("/api/order", Script::ok("busy").status(503));
    secondary.set("/api/order", Script::ok("secondary"));
    let e = edge(&config(&primary.url(), &secondary.url(), "")).await;
    let r = client().post(url(&e, "/api/order")).body("item=1").send().await.unwrap();
    assert_eq!(r.status(), 503, "a POST body is sent once, to the primary");
    assert_eq!(secondary.hits("/api/order"), 0);
    let r = client().request(reqwest::Method::OPTIONS, url(&e, "/api/order")).send().await.unwrap();
    assert_eq!(r.status(), 200, "OPTIONS fails over");
}

#[tokio::test]
async fn a_failing_primary_is_ejected_then_probed_back() {
    let primary = TestOrigin::start().await;
    let secondary = TestOrigin::start().await;
    for i in 0..8 {
        primary.set(&format!("/s{i}.m4s"), Script::ok("busy").status(503));
        secondary.set(&format!("/s{i}.m4s"), segment("ok"));
    }
    let state = TempDir::new("failover-eject");
    let e =
        controlled(&config(&primary.url(), &secondary.url(), "eject_after = 2\neject_for = \"400ms\"\n"), state.path())
            .await;
    let c = client();
    for i in 0..6 {
        let (s, _, _, _) = get(&c, &e.url(&format!("/s{i}.m4s")), &[]).await;
        assert_eq!(s, 200);
    }
    // Two failures, then skipped: the other four went straight to the secondary.
    assert_eq!(primary.total(), 2);
    assert_eq!(counter(&e, "mediaedge_origin_ejections_total").await, 1);
    assert_eq!(counter(&e, "mediaedge_origin_failovers_total").await, 2);
    // The primary recovers; after the cool-down one request probes it and it is back.
    primary.set("/s6.m4s", segment("primary again"));
    primary.set("/s7.m4s", segment("primary again"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    for path in ["/s6.m4s", "/s7.m4s"] {
        let (s, _, _, b) = get(&c, &e.url(path), &[]).await;
        assert_eq!((s, &b[..]), (200, &b"primary again"[..]), "{path}");
    }
    assert_eq!(secondary.hits("/s6.m4s") + secondary.hits("/s7.m4s"), 0);
}

#[test]
fn a_behavior_names_a_group_and_errors_name_the_field() {
    let bad = config("http://127.0.0.1:1", "http://127.0.0.1:2", "failover_status_codes = [501]\n");
    let e = mediaedge::Config::parse(&bad, "edge.toml".as_ref()).expect_err("501 is not a failover code");
    let text = e.to_string();
    assert!(text.contains("edge.toml") && text.contains("origin_groups[0].failover_status_codes[0]"), "{text}");
    let bad = config("http://127.0.0.1:1", "http://127.0.0.1:2", "")
        .replace("connection_attempts = 1", "connection_attempts = 4");
    let e = mediaedge::Config::parse(&bad, "edge.toml".as_ref()).expect_err("at most 3 attempts");
    assert!(e.to_string().contains("connection_attempts"), "{e}");
}
