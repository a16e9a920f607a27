#![no_main]
// Fuzzes proto's `Decoder::PtlrpcBody`: `cargo fuzz run ptlrpc_body` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::PtlrpcBody.run(data);
});
