//! TGI's v3 gRPC protocol (`generate.v3`): the only contract between the router and the shards.
//!
//! Messages, field numbers and optionality are TGI's, so a TGI router can drive a tgi-rs shard
//! and the other way round.

/// Generated types and tonic client/server for package `generate.v3`.
pub mod v3 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("generate.v3");
}
