#![no_main]
// Fuzzes proto's `Decoder::PingInfo`: `cargo fuzz run ping_info` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::PingInfo.run(data);
});
