//! mediaedge: a streaming-focused media delivery edge.
//!
//! The request path, in order: `server` accepts, `proxy::Edge::handle` routes
//! (`routing`), `cache` looks up and collapses, `origin` fetches, `cache::body`
//! stores while streaming, `proxy::respond` answers. See docs/architecture.md.

pub mod admin;
pub mod bench;
pub mod cache;
pub mod compress;
pub mod config;
pub mod http;
pub mod lifecycle;
pub mod log;
pub mod media;
pub mod metrics;
pub mod origin;
pub mod outcome;
pub mod proxy;
pub mod routing;
pub mod security;
pub mod server;
pub mod state;

pub use config::Config;
pub use server::{start, RunningEdge};
