#![no_main]
// Fuzzes proto's `Decoder::Text`: `cargo fuzz run text` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Text.run(data);
});
