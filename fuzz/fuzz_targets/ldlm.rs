#![no_main]
// Fuzzes proto's `Decoder::Ldlm`: `cargo fuzz run ldlm` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Ldlm.run(data);
});
