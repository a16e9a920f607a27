#![no_main]
// Fuzzes proto's `Decoder::Reint`: `cargo fuzz run reint` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Reint.run(data);
});
