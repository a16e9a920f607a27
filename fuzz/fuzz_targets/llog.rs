#![no_main]
// Fuzzes proto's `Decoder::Llog`: `cargo fuzz run llog` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Llog.run(data);
});
