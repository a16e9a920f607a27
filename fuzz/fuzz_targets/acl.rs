#![no_main]
// Fuzzes proto's `Decoder::Acl`: `cargo fuzz run acl` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::Acl.run(data);
});
