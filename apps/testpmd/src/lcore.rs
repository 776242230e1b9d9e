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

/// The CPUs this process may run on (its `sched_getaffinity` mask), in increasing order.
/// Falls back to `0..available_parallelism` if the mask cannot be read.
pub fn allowed_cpus() -> Vec<u32> {
    // SAFETY: cpu_set_t is plain data, and sched_getaffinity writes at most its size.
    let mask = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    };
    match mask {
        Some(set) => (0..libc::CPU_SETSIZE as u32)
            // SAFETY: the index is below CPU_SETSIZE.
            .filter(|&c| unsafe { libc::CPU_ISSET(c as usize, &set) })
            .collect(),
        None => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            (0..n).collect()
        }
    }
}

/// Writes a CPU list the way `-l` takes it and `taskset -c` prints it: `0-3,6,8-9`.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j == i {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(",")
    }
}

/// Where each lcore's thread will be pinned: its CPU when that CPU is in `allowed`, else
/// `None` (unpinned), with one warning line for each lcore whose CPU is outside `allowed`.
pub fn placement(lcores: &[Lcore], allowed: &[u32]) -> (Vec<Option<u32>>, Vec<String>) {
    let mut warnings = Vec::new();
    let cpus = lcores
        .iter()
        .map(|l| match l.cpu {
            Some(c) if allowed.contains(&c) => Some(c),
            Some(c) => {
                warnings.push(format!(
                    "Warning: lcore {} maps to CPU {c}, which is not in this process's CPU affinity mask (allowed CPUs: {}); its forwarding thread runs unpinned. Map it to an allowed CPU, e.g. --lcores {}@{}",
                    l.id,
                    format_cpu_list(allowed),
                    l.id,
                    allowed.first().copied().unwrap_or(0)
                ));
                None
            }
            None => None,
        })
        .collect();
    (cpus, warnings)
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

    #[test]
    fn cpu_lists_and_placement() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(format_cpu_list(&[1]), "1");
        assert_eq!(format_cpu_list(&[]), "none");
        // Under `taskset -c 1`: CPU 1 is allowed, whatever the number of CPUs.
        let (cpus, w) = placement(&parse_lcores("0@1,1@1").unwrap(), &[1]);
        assert_eq!(cpus, vec![Some(1), Some(1)]);
        assert!(w.is_empty(), "{w:?}");
        let (cpus, w) = placement(&parse_lcores("6-7").unwrap(), &[0, 1]);
        assert_eq!(cpus, vec![None, None]);
        assert_eq!(w.len(), 2);
        assert!(
            w[1].starts_with("Warning: lcore 7 maps to CPU 7, which is not in this process's CPU affinity mask (allowed CPUs: 0-1)"),
            "{}",
            w[1]
        );
        assert!(!w[1].contains("Some("), "{}", w[1]);
        let me = allowed_cpus();
        assert!(!me.is_empty());
        assert!(me.windows(2).all(|p| p[0] < p[1]));
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
