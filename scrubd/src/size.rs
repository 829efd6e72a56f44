//! Byte sizes on the command line (`--memory 64M`) and in reports, and the
//! default staging budget.

/// One KiB, MiB, GiB, TiB.
const UNITS: [(char, u32); 4] = [('K', 10), ('M', 20), ('G', 30), ('T', 40)];

/// The smallest default staging budget.
pub const MIN_DEFAULT_MEMORY: u64 = 64 << 20;
/// The largest default staging budget.
pub const MAX_DEFAULT_MEMORY: u64 = 4 << 30;

/// Parses a size: plain bytes (`4096`) or a number with a binary-multiple
/// suffix `K`, `M`, `G` or `T` (case-insensitive, `KiB`-style spellings
/// accepted): `512K`, `64M`, `1G`, `1GiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "{s:?} is not a size: expected a number of bytes, optionally followed by K, M, G or T"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is too large a number"))?;
    let suffix = suffix.trim();
    if suffix.is_empty() {
        return Ok(n);
    }
    let mut chars = suffix.chars();
    let unit = chars.next().map(|c| c.to_ascii_uppercase());
    let rest: String = chars.collect();
    let shift = UNITS
        .iter()
        .find(|(u, _)| Some(*u) == unit)
        .map(|(_, sh)| *sh)
        .filter(|_| rest.is_empty() || rest.eq_ignore_ascii_case("iB"))
        .ok_or_else(|| {
            format!("{s:?}: unknown unit {suffix:?}; use K, M, G or T (multiples of 1024)")
        })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} does not fit in 64 bits"))
}

/// Formats a byte count for people: `64 MiB`, `1.5 GiB`, `512 bytes`.
pub fn human(bytes: u64) -> String {
    for (unit, shift) in UNITS.iter().rev() {
        let one = 1u64 << shift;
        if bytes >= one {
            let whole = bytes / one;
            let tenths = (bytes % one).saturating_mul(10) / one;
            return if tenths == 0 {
                format!("{whole} {unit}iB")
            } else {
                format!("{whole}.{tenths} {unit}iB")
            };
        }
    }
    format!("{bytes} bytes")
}

/// The default staging budget: 1/8 of physical memory, at least
/// [`MIN_DEFAULT_MEMORY`] and at most [`MAX_DEFAULT_MEMORY`]; the minimum if
/// physical memory cannot be found out.
pub fn default_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total(&m))
        .unwrap_or(0);
    clamp_default(total / 8)
}

/// [`default_memory`]'s bounds.
fn clamp_default(bytes: u64) -> u64 {
    bytes.clamp(MIN_DEFAULT_MEMORY, MAX_DEFAULT_MEMORY)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_and_plain_bytes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size(" 8 M "), Ok(8 << 20));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "M",
            "-1",
            "1.5G",
            "64MB",
            "12X",
            "99999999999999999999",
            "17179869184G",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 bytes");
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(320 << 20), "320 MiB");
    }

    #[test]
    fn default_memory_bounds() {
        let m = "MemTotal:       24684096 kB\nMemFree: 1 kB\n";
        assert_eq!(mem_total(m), Some(24684096 * 1024));
        assert_eq!(clamp_default(24684096 * 1024 / 8), 24684096 * 1024 / 8);
        assert_eq!(clamp_default(0), MIN_DEFAULT_MEMORY);
        assert_eq!(clamp_default(1 << 40), MAX_DEFAULT_MEMORY);
        assert_eq!(mem_total("nothing"), None);
        let d = default_memory();
        assert!((MIN_DEFAULT_MEMORY..=MAX_DEFAULT_MEMORY).contains(&d));
    }
}
