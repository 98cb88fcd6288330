//! DASH Media Presentation Description (MPD, ISO/IEC 23009-1) parsing.
//!
//! Only what an edge needs is kept: whether the presentation is live and how
//! often it changes (`type`, `minimumUpdatePeriod`, `availabilityStartTime`,
//! ...), and every URI it references (`BaseURL` at each level,
//! `SegmentTemplate` `initialization`/`media`, `SegmentTimeline`), so that
//! manifests can be rewritten and segments prefetched.
//!
//! The parser is a streaming pass over quick-xml events with an explicit
//! element stack (no recursion). Unknown elements and attributes are skipped,
//! whatever their content; malformed XML, a root other than `MPD`, a document
//! cut short or nested more than [`MAX_DEPTH`] deep is an error. Invalid
//! attribute values (a bad number or duration) are treated as absent.
//!
//! `SegmentTemplate` is inherited Period → AdaptationSet → Representation
//! attribute by attribute: after parsing, `AdaptationSet::segment_template` and
//! `Representation::segment_template` hold the *effective* template, with
//! every attribute the element's own template sets overriding its parent's.
//! A Representation without `mimeType`, `codecs`, `width` or `height` takes
//! the AdaptationSet's. `SegmentBase` and `SegmentList` are not modelled.

use super::MediaError;

mod model;
mod parser;
mod templates;
#[cfg(test)]
mod tests;
mod time;

pub use model::*;
pub use parser::*;
pub use templates::*;
pub use time::*;

/// Deepest element nesting accepted. Real MPDs are under 10 deep.
pub const MAX_DEPTH: usize = 256;

/// Widest `%0Nd` format tag honoured in a template (a `u64` has 20 digits);
/// a wider one is left unexpanded.
const MAX_FORMAT_WIDTH: usize = 64;

/// Bytes a parse may materialize beyond its input when templates are inherited
/// (each Representation gets its own copy of an inherited timeline): at least
/// this much, or `TEMPLATE_AMPLIFICATION` times the input.
const TEMPLATE_BUDGET_MIN: usize = 64 << 20;
const TEMPLATE_AMPLIFICATION: usize = 16;
