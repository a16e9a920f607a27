#![no_main]
// Fuzzes proto's `Decoder::Mgs`: `cargo fuzz run mgs` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Mgs.run(data);
});
