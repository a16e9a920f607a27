#![no_main]
// Fuzzes proto's `Decoder::AcceptorRequest`: `cargo fuzz run acceptor_request` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::AcceptorRequest.run(data);
});
