#![no_main]
// Fuzzes proto's `Decoder::Hello`: `cargo fuzz run hello` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Hello.run(data);
});
