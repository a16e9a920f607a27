//! The Rustre appliance: shards, ptlrpc services, the MGS, MDT and OST targets, and the LDLM.

pub mod config;
pub mod ldlm;
pub mod mdt;
pub mod mesh;
pub mod mgc;
pub mod mgmt;
pub mod mgs;
pub mod node;
pub mod osp;
pub mod ost;
pub mod pid1;
pub mod ratelog;
pub mod shard;
pub mod store;
pub mod target;
