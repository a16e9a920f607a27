#![no_main]
// Fuzzes proto's `Decoder::ConnectData`: `cargo fuzz run connect_data` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::ConnectData.run(data);
});
