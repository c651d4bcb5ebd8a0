//! Linux audit grouping (`stele_formats::auditd::Grouper`) on arbitrary lines: every
//! line it accepts ends up in exactly one emitted event (or one reported as too large),
//! in arrival order within its event; every emitted event normalizes; memory stays
//! bounded by the open-event limit.

use stele_formats::auditd::{Grouped, Grouper, normalize};

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else { return };
    let limit = 32 + usize::from(ctl) * 16;
    let mut g = Grouper::new(limit);
    let mut accepted = 0usize;
    let mut emitted_lines = 0usize;
    let mut too_large = 0usize;
    let take = |x: Grouped, emitted_lines: &mut usize, too_large: &mut usize| match x {
        Grouped::Event { bytes, .. } => {
            assert!(bytes.len() <= limit);
            normalize(&bytes).expect("an emitted event normalizes");
            *emitted_lines += bytes.split(|&b| b == b'\n').count();
        }
        Grouped::TooLarge { .. } => *too_large += 1,
    };
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() || line.contains(&b'\r') {
            continue;
        }
        if g.push(line, i as u64 + 1, 0).is_ok() {
            accepted += 1;
        }
        while let Some(x) = g.pop(false) {
            take(x, &mut emitted_lines, &mut too_large);
        }
    }
    while let Some(x) = g.pop(true) {
        take(x, &mut emitted_lines, &mut too_large);
    }
    if too_large == 0 {
        assert_eq!(emitted_lines, accepted);
    }
}
