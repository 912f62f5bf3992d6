//! costctx's native OTLP trace codec. `wire` reads and writes the protobuf wire format over
//! checked slices, `schema` knows the OTLP trace messages, `scan` validates a request and
//! collects the batch view, `encode` writes edits back in one pass. `python` (feature
//! "python") is the PyO3 module `costctx_native`.

// PyO3 entry points take Python's arguments one by one and hand tuples back to Python:
// their long argument lists and tuple types are the boundary's shape, not a design to factor.
#![allow(clippy::too_many_arguments, clippy::type_complexity)]

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
mod inherit_kernel;
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the ancestor table's key map
mod inherit_keys;
#[cfg(feature = "python")]
mod inherit_learn;
#[cfg(feature = "python")]
mod inherit_records;
#[cfg(feature = "python")]
mod inherit_split;
#[cfg(feature = "python")]
mod inherit_votes;
#[cfg(feature = "python")]
mod slots;

#[cfg(feature = "python")]
mod budget;

#[cfg(feature = "python")]
mod wire_count;

#[cfg(feature = "python")]
mod table;

#[cfg(feature = "python")]
mod resend_key;

#[cfg(feature = "python")]
mod settle;

#[cfg(feature = "python")]
mod span_read;

#[cfg(feature = "python")]
mod group_table;

#[cfg(feature = "oracle")]
pub mod oracle;
