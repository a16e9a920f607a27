//! The Rustre appliance: shards, ptlrpc services, the MGS, MDT and OST targets, and the LDLM.

pub mod ldlm;
pub mod mgs;
