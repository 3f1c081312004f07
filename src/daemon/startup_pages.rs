//! Hands back the program's start-up-only code once the pipeline runs.
//!
//! Loading the configuration runs code nothing else needs: the TOML parser, the layered config,
//! the key-path error reporting wrapped around every config type's deserializer, the checks,
//! building the plans and opening the stores. Measured on x86-64 (README, Benchmarks): of the
//! executable's 4.0 MB of code, 3.8 MB were resident once `run` had started.
//!
//! After the start (and after each reload) the executable's read-only mappings are marked
//! random-access (no read-around on a fault, so a page comes back alone rather than with its
//! neighbours) and paged out (`MADV_PAGEOUT`, Linux 5.4+). Whatever the running pipeline
//! touches next faults back in, from the page cache or the disk, once. How much comes back
//! depends on how the kernel cached the file: 1.7 to 3.0 MB of code in the runs measured here
//! (a kernel that keeps the file in large folios maps a whole folio back at a fault). Nothing
//! is written: these pages are never dirty. On a kernel without these advices the call fails
//! and nothing changes.

use std::path::Path;

/// What [`hand_back`] did: mappings advised, and the bytes they span.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HandedBack {
    pub mappings: usize,
    pub bytes: usize,
}

/// Pages out this executable's read-only, file-backed mappings (its code and constants).
pub fn hand_back() -> HandedBack {
    let (Ok(exe), Ok(maps)) = (
        std::env::current_exe(),
        std::fs::read_to_string("/proc/self/maps"),
    ) else {
        return HandedBack::default();
    };
    let mut done = HandedBack::default();
    for (start, end) in read_only_mappings_of(&maps, &exe) {
        if advise(start, end - start) {
            done.mappings += 1;
            done.bytes += end - start;
        }
    }
    done
}

/// The address ranges of `exe`'s mappings that are neither writable nor anonymous, from the
/// text of `/proc/self/maps` (`start-end perms offset dev inode path`).
fn read_only_mappings_of(maps: &str, exe: &Path) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (start, end) = parts.next()?.split_once('-')?;
            let perms = parts.next()?;
            let path = parts.nth(3)?;
            if perms.as_bytes().get(1) != Some(&b'-') || Path::new(path) != exe {
                return None;
            }
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn advise(start: usize, len: usize) -> bool {
    let addr = start as *mut libc::c_void;
    // SAFETY: the range is a whole mapping of this process's own executable, read from
    // /proc/self/maps; both advices only change paging (read-around, residency) of clean,
    // read-only, file-backed pages and never their contents.
    unsafe {
        libc::madvise(addr, len, libc::MADV_RANDOM) == 0
            && libc::madvise(addr, len, libc::MADV_PAGEOUT) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_start: usize, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_read_only_mappings_are_chosen() {
        let maps = "\
55d0c0000000-55d0c0166000 r--p 00000000 fe:00 5377178 /opt/rgw/retrofit-gateway
55d0c0166000-55d0c0546000 r-xp 00166000 fe:00 5377178 /opt/rgw/retrofit-gateway
55d0c0546000-55d0c0600000 r--p 00546000 fe:00 5377178 /opt/rgw/retrofit-gateway
55d0c0600000-55d0c0603000 rw-p 00600000 fe:00 5377178 /opt/rgw/retrofit-gateway
55d0c1000000-55d0c1200000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000180000 r-xp 00028000 fe:00 1234 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000201000 r-xp 00000000 fe:00 5377179 /opt/rgw/retrofit-gateway-old
garbage line
";
        let chosen = read_only_mappings_of(maps, Path::new("/opt/rgw/retrofit-gateway"));
        assert_eq!(
            chosen,
            vec![
                (0x55d0c0000000, 0x55d0c0166000),
                (0x55d0c0166000, 0x55d0c0546000),
                (0x55d0c0546000, 0x55d0c0600000),
            ]
        );
    }

    /// Resident kB of the executable's read-only mappings, from /proc/self/smaps.
    #[cfg(target_os = "linux")]
    fn resident_kb() -> u64 {
        let exe = std::env::current_exe().unwrap();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut ours = false;
        let mut kb = 0;
        for line in smaps.lines() {
            if let Some(rss) = line.strip_prefix("Rss:") {
                if ours {
                    kb += rss.trim().trim_end_matches(" kB").parse::<u64>().unwrap();
                }
            } else if line
                .split_whitespace()
                .next()
                .is_some_and(|f| !f.ends_with(':'))
            {
                // A mapping's header line opens its block of fields.
                ours = !read_only_mappings_of(line, &exe).is_empty();
            }
        }
        kb
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_test_binary_hands_its_code_back_and_keeps_running() {
        let before = resident_kb();
        let done = hand_back();
        let after = resident_kb();
        assert!(done.mappings >= 2, "{done:?}");
        // qemu-user (the runner in .cargo/config.toml, which sets this variable) answers the
        // advice with success and does nothing; a kernel pages out.
        if std::env::var_os("RETROFIT_GATEWAY_EMULATED").is_some() {
            eprintln!(
                "under an emulator: residency not compared ({before} kB before, {after} kB after)"
            );
        } else {
            assert!(
                after < before,
                "resident {before} kB before, {after} kB after"
            );
        }
    }
}
