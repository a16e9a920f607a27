#![no_main]
// Fuzzes proto's `Decoder::LustreMsg`: `cargo fuzz run lustre_msg` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::LustreMsg.run(data);
});
