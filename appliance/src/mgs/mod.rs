//! The management server (MGS): file system configuration, target registration, and the
//! configuration logs clients and targets read.

pub mod db;
pub mod service;
