#![no_main]
// Fuzzes proto's `Decoder::Frame`: `cargo fuzz run frame` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Frame.run(data);
});
