//! IPv4 ranges as inclusive `u32` intervals: parsing, intersection and subtraction, for
//! narrowing allow-only firewall rules.

use std::net::Ipv4Addr;

pub type Range = (u32, u32);

/// `a.b.c.d` or `a.b.c.d/n` (host bits ignored, as Azure does).
pub fn parse(s: &str) -> Option<Range> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u32>().ok().filter(|l| *l <= 32)?),
        None => (s, 32),
    };
    let ip = u32::from(ip.trim().parse::<Ipv4Addr>().ok()?);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let start = ip & mask;
    Some((start, start | !mask))
}

pub fn parse_pair(start: &str, end: &str) -> Option<Range> {
    let s = u32::from(start.parse::<Ipv4Addr>().ok()?);
    let e = u32::from(end.parse::<Ipv4Addr>().ok()?);
    (s <= e).then_some((s, e))
}

pub fn fmt(ip: u32) -> String {
    Ipv4Addr::from(ip).to_string()
}

pub fn intersects(a: Range, b: Range) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// `range` minus every blocked range, as sorted disjoint intervals.
pub fn subtract(range: Range, blocked: &[Range]) -> Vec<Range> {
    let mut parts = vec![range];
    for &b in blocked {
        let mut next = Vec::new();
        for p in parts {
            if !intersects(p, b) {
                next.push(p);
                continue;
            }
            if p.0 < b.0 {
                next.push((p.0, b.0 - 1));
            }
            if p.1 > b.1 {
                next.push((b.1 + 1, p.1));
            }
        }
        parts = next;
    }
    parts.sort();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: &str, b: &str) -> Range {
        parse_pair(a, b).unwrap()
    }

    #[test]
    fn parses_addresses_and_cidrs() {
        assert_eq!(parse("10.0.0.5"), Some(r("10.0.0.5", "10.0.0.5")));
        assert_eq!(parse("10.0.0.77/24"), Some(r("10.0.0.0", "10.0.0.255")));
        assert_eq!(parse("0.0.0.0/0"), Some((0, u32::MAX)));
        assert_eq!(parse("10.0.0.0/33"), None);
        assert_eq!(parse("fe80::1"), None);
        assert_eq!(parse_pair("10.0.0.9", "10.0.0.1"), None);
    }

    #[test]
    fn subtracting_splits_around_blocks() {
        let all = r("0.0.0.0", "255.255.255.255");
        assert_eq!(
            subtract(all, &[parse("203.0.113.7").unwrap()]),
            vec![
                r("0.0.0.0", "203.0.113.6"),
                r("203.0.113.8", "255.255.255.255")
            ]
        );
        // Two blocks in one rule, one touching its start.
        assert_eq!(
            subtract(
                r("198.51.100.0", "198.51.100.255"),
                &[
                    parse("198.51.100.0/30").unwrap(),
                    parse("198.51.100.128/25").unwrap()
                ]
            ),
            vec![r("198.51.100.4", "198.51.100.127")]
        );
        // Fully covered: nothing left.
        assert!(subtract(r("10.0.0.1", "10.0.0.2"), &[parse("10.0.0.0/24").unwrap()]).is_empty());
        // Disjoint: unchanged.
        assert_eq!(
            subtract(r("10.0.0.1", "10.0.0.2"), &[parse("10.0.1.0/24").unwrap()]),
            vec![r("10.0.0.1", "10.0.0.2")]
        );
    }
}
