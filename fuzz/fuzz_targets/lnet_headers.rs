#![no_main]
// Fuzzes proto's `Decoder::LnetHeaders`: `cargo fuzz run lnet_headers` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::LnetHeaders.run(data);
});
