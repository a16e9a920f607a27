#![no_main]
// Fuzzes proto's `Decoder::Bodies`: `cargo fuzz run bodies` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Bodies.run(data);
});
