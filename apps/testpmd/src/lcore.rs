//! Lcore lists (`-l 0-3,5`, `--lcores '1@0,(2,3)@1'`, `-c 0x3`) and thread pinning.

/// A logical core: an id and the CPU its thread runs on (None: unpinned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lcore {
    /// Lcore id.
    pub id: u32,
    /// CPU to pin to.
    pub cpu: Option<u32>,
}

fn parse_set(s: &str) -> Result<Vec<u32>, String> {
    let s = s.trim().trim_start_matches('(').trim_end_matches(')');
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err("empty element".into());
        }
        if let Some((a, b)) = part.split_once('-') {
            let a: u32 = a
                .trim()
                .parse()
                .map_err(|_| format!("'{a}' is not a number"))?;
            let b: u32 = b
                .trim()
                .parse()
                .map_err(|_| format!("'{b}' is not a number"))?;
            if a > b || b - a > 1023 {
                return Err(format!("bad range {a}-{b}"));
            }
            out.extend(a..=b);
        } else {
            out.push(
                part.parse()
                    .map_err(|_| format!("'{part}' is not a number"))?,
            );
        }
    }
    Ok(out)
}

/// Splits at commas that are not inside parentheses.
fn top_level(s: &str) -> Vec<&str> {
    let mut v = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                v.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    v.push(&s[start..]);
    v
}

/// Parses `-l`/`--lcores` syntax.
pub fn parse_lcores(s: &str) -> Result<Vec<Lcore>, String> {
    let mut out: Vec<Lcore> = Vec::new();
    for el in top_level(s.trim()) {
        let (ids, cpu) = match el.split_once('@') {
            Some((a, b)) => {
                let cpus = parse_set(b)?;
                (parse_set(a)?, Some(*cpus.first().ok_or("empty cpu set")?))
            }
            None => {
                let ids = parse_set(el)?;
                (ids, None)
            }
        };
        for id in ids {
            if out.iter().any(|l| l.id == id) {
                return Err(format!("lcore {id} listed twice"));
            }
            out.push(Lcore {
                id,
                cpu: Some(cpu.unwrap_or(id)),
            });
        }
    }
    if out.is_empty() {
        return Err("no lcores".into());
    }
    Ok(out)
}

/// Parses a hex coremask.
pub fn parse_coremask(s: &str) -> Result<Vec<Lcore>, String> {
    let m = u64::from_str_radix(s.trim_start_matches("0x").trim_start_matches("0X"), 16)
        .map_err(|_| "not a hex mask".to_string())?;
    let v: Vec<Lcore> = (0..64)
        .filter(|b| m & (1 << b) != 0)
        .map(|b| Lcore {
            id: b,
            cpu: Some(b),
        })
        .collect();
    if v.is_empty() {
        return Err("empty mask".into());
    }
    Ok(v)
}

/// Pins the calling thread to `cpu`. Returns false (changing nothing) if that CPU does not
/// exist or may not be used.
pub fn pin(cpu: u32) -> bool {
    if cpu as usize >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it (cpu < CPU_SETSIZE).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Number of CPUs this process may run on.
pub fn online_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms() {
        assert_eq!(parse_lcores("0-1").unwrap().len(), 2);
        assert_eq!(parse_lcores("0,2,3,4,5").unwrap().len(), 5);
        let v = parse_lcores("1@0,(2,3)@1").unwrap();
        assert_eq!(
            v[0],
            Lcore {
                id: 1,
                cpu: Some(0)
            }
        );
        assert_eq!(
            v[2],
            Lcore {
                id: 3,
                cpu: Some(1)
            }
        );
        assert!(parse_lcores("0,0").is_err());
        assert!(parse_lcores("3-1").is_err());
        assert!(parse_lcores("").is_err());
        assert_eq!(
            parse_coremask("0x5")
                .unwrap()
                .iter()
                .map(|l| l.id)
                .collect::<Vec<_>>(),
            vec![0, 2]
        );
    }

    proptest! {
        #[test]
        fn ranges_expand(a in 0u32..64, n in 0u32..32) {
            let v = parse_lcores(&format!("{a}-{}", a + n)).unwrap();
            prop_assert_eq!(v.len() as u32, n + 1);
            prop_assert!(v.iter().all(|l| l.cpu == Some(l.id)));
        }

        #[test]
        fn never_panics(s in "[0-9,@()\\-]{0,20}") {
            let _ = parse_lcores(&s);
        }
    }
}
