#![no_main]
// Fuzzes proto's `Decoder::DirPage`: `cargo fuzz run dir_page` (needs a nightly toolchain).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proto::decoders::Decoder::DirPage.run(data);
});
