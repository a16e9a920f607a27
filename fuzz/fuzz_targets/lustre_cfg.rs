#![no_main]
// Fuzzes proto's `Decoder::LustreCfg`: `cargo fuzz run lustre_cfg` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::LustreCfg.run(data);
});
