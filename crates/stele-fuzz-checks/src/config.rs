//! The config file (TOML) and every check `stele check-config` runs, on arbitrary
//! text: never panics, and gives the same answer twice (no hidden state, no reads of
//! files named by the text).

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let first = stele::check_config_text(&text);
    assert_eq!(first, stele::check_config_text(&text), "check-config answered twice differently");
}
