//! The contracts of promolens, with no I/O: the event wire format and its validation
//! ([`event`]), the attribution codec that turns a launch's scene value and `query` into UTM columns
//! ([`attribution`]), the default channel of a launch ([`channel`]), and the Arrow schema of every table ([`tables`], behind the default `arrow`
//! feature so that the codec also builds for wasm32), and the data directory's folders
//! ([`layout`]).
//!
//! Must not depend on `ingest`, `host` or `plugin`, nor on anything that does I/O.

pub mod attribution;
pub mod channel;
pub mod event;
pub mod layout;
pub mod percent;
#[cfg(feature = "arrow")]
pub mod tables;
pub mod wechat;

pub use attribution::{
    Attribution, AttributionStatus, Attributor, CodeKind, Normalizer, Utm, decode_attribution,
};
pub use event::{Event, EventError, IDENTIFY, LAUNCH, LaunchType, Limits, TsWindow};
