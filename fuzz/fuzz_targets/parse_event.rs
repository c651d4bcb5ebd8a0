#![no_main]
//! See `stele_fuzz_checks::parse_event`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stele_fuzz_checks::parse_event::check(data));
