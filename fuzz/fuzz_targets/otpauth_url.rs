#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::otpauth_url_builder(data));
