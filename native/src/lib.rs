//! costctx's native OTLP trace codec. `wire` reads and writes the protobuf wire format over
//! checked slices, `schema` knows the OTLP trace messages, `scan` validates a request and
//! collects the batch view, `encode` writes edits back in one pass. `python` (feature
//! "python") is the PyO3 module `costctx_native`.

pub mod encode;
mod fxhash;
pub mod groups;
pub mod kinds;
pub mod scan;
pub mod schema;
pub mod wire;

#[cfg(feature = "python")]
mod python;

#[cfg(feature = "python")]
mod view;

#[cfg(feature = "python")]
mod price;

#[cfg(feature = "python")]
mod envelope;

#[cfg(feature = "python")]
mod inherit;

#[cfg(feature = "python")]
mod ancestors;

#[cfg(feature = "python")]
mod budget;

#[cfg(feature = "python")]
mod wire_count;

#[cfg(feature = "python")]
mod table;

#[cfg(feature = "python")]
mod settle;

#[cfg(feature = "oracle")]
pub mod oracle;
