#![no_main]
// Fuzzes proto's `Decoder::Layout`: `cargo fuzz run layout` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Layout.run(data);
});
