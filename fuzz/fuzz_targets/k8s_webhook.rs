#![no_main]
//! See `stele_fuzz_checks::k8s_webhook`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stele_fuzz_checks::k8s_webhook::check(data));
