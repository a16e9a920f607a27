//! Per-shard counters. Each shard owns its counters (plain cells, no atomics); the management
//! layer reads a [`ShardStats`] snapshot through [`crate::Lnet::stats`].

use std::cell::Cell;

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        /// A snapshot of one shard's LNet counters.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct ShardStats {
            $($(#[$m])* pub $name: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: Cell<u64>,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> ShardStats {
                ShardStats { $($name: self.$name.get(),)* }
            }
        }

        impl ShardStats {
            /// Counter names and values, in declaration order (for metrics exporters).
            #[must_use]
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }

            /// Adds another shard's counters to these.
            pub fn add(&mut self, o: &ShardStats) {
                $(self.$name += o.$name;)*
            }
        }
    };
}

counters! {
    /// LNET messages received (all types).
    msgs_rx,
    /// LNET messages sent (all types).
    msgs_tx,
    /// Payload bytes received.
    bytes_rx,
    /// Payload bytes sent.
    bytes_tx,
    /// PUTs received.
    put_rx,
    /// GETs received.
    get_rx,
    /// REPLYs received.
    reply_rx,
    /// ACKs received.
    ack_rx,
    /// NOOPs received (keepalives and ZC-ACKs).
    noop_rx,
    /// NOOPs sent.
    noop_tx,
    /// Messages dropped because nothing matched (unknown portal, unmatched bits, stale MD).
    drop_nomatch,
    /// Payload bytes of dropped messages.
    drop_bytes,
    /// Messages dropped because they were addressed to another node (routing is off).
    drop_not_for_me,
    /// Connections closed for a protocol error (bad header, type, length, checksum, cookie).
    drop_proto,
    /// Connections refused by the acceptor (bad magic, version, NID, port).
    accept_refused,
    /// Connections accepted and established.
    conns_accepted,
    /// Connections established actively.
    conns_connected,
    /// Connection attempts that failed.
    connect_failed,
    /// Connections closed (any reason).
    conns_closed,
    /// Hellos answered with ctype NONE (race lost, duplicate, incarnation change).
    conn_race_none,
    /// Peers whose incarnation changed (old connections dropped).
    peer_reboots,
    /// Checksum mismatches.
    csum_errors,
    /// ZC-ACK cookies requested by us.
    zc_req_tx,
    /// ZC-ACK cookies the peer asked us for.
    zc_req_rx,
    /// ZC-ACKs sent (piggy-backed or in NOOPs).
    zc_ack_tx,
    /// ZC-ACKs piggy-backed on LNET messages.
    zc_ack_piggyback,
    /// Keepalive NOOPs sent.
    keepalive_tx,
    /// Discovery pings sent.
    ping_tx,
    /// Pings answered.
    ping_rx,
    /// Discovery pings that failed.
    ping_failed,
    /// Messages that failed (peer dead, discovery failed, queue full, connection lost).
    send_failed,
    /// Messages forwarded to another shard.
    xshard_tx,
    /// Messages received from another shard.
    xshard_rx,
    /// Sockets handed to their home shard by the acceptor.
    fd_handoff,
    /// Peers declared dead.
    peers_dead,
    /// Sends that waited for a peer credit.
    credit_waits,
}
