//! Output shapes. The JSON written here is the stable contract of design.md §4; internal types
//! are never serialised directly.

pub mod diagnostics;
pub mod explain;
pub mod map;
pub mod map_html;
pub mod report;
