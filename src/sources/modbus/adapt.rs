//! Adaptive reads: what a device's exception 2 teaches the read planner.
//!
//! A device whose register map has holes answers a read that spans one with exception 2
//! (illegal data address), and a planner that coalesces across the hole would get that answer,
//! and no data, at every poll. Instead the poll splits the refused read at its widest gap
//! between points and tries both halves, down to single points ([`split`]):
//! - when both halves of a refused read answer, the registers between them (or the boundary
//!   itself, when there are none) become a [`Barrier`] no later read spans;
//! - a point refused on its own is skipped from then on, its registers a barrier too.
//!
//! So the points the device does answer arrive in the very poll that found the hole, and the
//! next poll's plan already avoids it. What was learned is reported once (a log line naming the
//! registers and points) and shown on the status page; it is forgotten every
//! [`REPROBE_AFTER`] and learned again, in case the device's firmware changed.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Function;

use super::plan::{PlannedPoint, ReadRequest};

/// How long lessons are kept before the device is probed with the full plan again.
pub const REPROBE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Registers `start..end` of one function that no read may include; when `start == end`, a
/// boundary no read may span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Barrier {
    pub function: Function,
    pub start: u16,
    pub end: u16,
}

impl Barrier {
    /// Whether a read of `function` over `start..end` would touch this barrier.
    pub fn blocks(&self, function: Function, start: u32, end: u32) -> bool {
        let (bs, be) = (u32::from(self.start), u32::from(self.end));
        function == self.function
            && if bs == be {
                start < bs && end > bs
            } else {
                start < be && end > bs
            }
    }
}

/// What one device has taught its plan.
#[derive(Debug, Default)]
pub struct Lessons {
    pub barriers: BTreeSet<Barrier>,
    /// Points (indices into the plan's points) the device refuses on their own.
    pub refused: BTreeSet<usize>,
    /// When the first of these was learned.
    since: Option<Instant>,
    /// Everything reported so far, so that learning it again after a re-probe stays quiet.
    reported: (BTreeSet<Barrier>, BTreeSet<usize>),
}

impl Lessons {
    pub fn is_empty(&self) -> bool {
        self.barriers.is_empty() && self.refused.is_empty()
    }

    /// Forgets what was learned when it is older than [`REPROBE_AFTER`]; true if it did.
    pub fn expire(&mut self, now: Instant) -> bool {
        match self.since {
            Some(since) if now.duration_since(since) >= REPROBE_AFTER => {
                self.barriers.clear();
                self.refused.clear();
                self.since = None;
                true
            }
            _ => false,
        }
    }

    fn learned(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }

    /// Both halves answered where their union was refused: the registers between them.
    pub fn bar_between(&mut self, left: &ReadRequest, right: &ReadRequest) {
        let left_end = left.start.saturating_add(left.count);
        self.barriers.insert(Barrier {
            function: left.function,
            start: left_end.min(right.start),
            end: right.start.max(left_end),
        });
        self.learned();
    }

    /// A read of points that cannot be split further was refused: the points are skipped.
    pub fn refuse(&mut self, request: &ReadRequest) {
        self.refused.extend(request.points.iter().copied());
        self.barriers.insert(Barrier {
            function: request.function,
            start: request.start,
            end: request.start.saturating_add(request.count),
        });
        self.learned();
    }

    /// What was learned and not reported yet, marked reported; `None` when nothing is new.
    pub fn news(&mut self, points: &[PlannedPoint]) -> Option<String> {
        let barriers: Vec<Barrier> = self
            .barriers
            .difference(&self.reported.0)
            .copied()
            .collect();
        let refused: Vec<usize> = self.refused.difference(&self.reported.1).copied().collect();
        if barriers.is_empty() && refused.is_empty() {
            return None;
        }
        self.reported.0.extend(barriers.iter().copied());
        self.reported.1.extend(refused.iter().copied());
        Some(describe(points, &barriers, &refused))
    }

    /// What the plan avoids now, for the status page; `None` when it avoids nothing.
    pub fn summary(&self, points: &[PlannedPoint]) -> Option<String> {
        let barriers: Vec<Barrier> = self.barriers.iter().copied().collect();
        let refused: Vec<usize> = self.refused.iter().copied().collect();
        (!self.is_empty()).then(|| describe(points, &barriers, &refused))
    }
}

/// In Chinese, for the installer reading the status page: the registers reads avoid and the
/// points skipped, each with its register.
fn describe(points: &[PlannedPoint], barriers: &[Barrier], refused: &[usize]) -> String {
    let mut parts: Vec<String> = barriers
        .iter()
        .map(|barrier| {
            let code = barrier.function.code();
            if barrier.start == barrier.end {
                format!("读取不跨越寄存器 {} 前后（功能码 {code}）", barrier.start)
            } else {
                format!(
                    "读取避开寄存器 {}–{}（功能码 {code}，设备答“非法数据地址”）",
                    barrier.start,
                    barrier.end - 1
                )
            }
        })
        .collect();
    let names: Vec<String> = refused
        .iter()
        .filter_map(|&p| points.get(p))
        .map(|p| format!("{}（寄存器 {}）", p.name, p.address))
        .collect();
    if !names.is_empty() {
        parts.push(format!("设备拒绝读取，已跳过：{}", names.join("、")));
    }
    parts.join("；")
}

/// A refused read split in two at the widest gap between its points (the middle boundary when
/// they touch); `None` when it cannot be split: one point, or points on the same registers.
pub fn split(points: &[PlannedPoint], request: &ReadRequest) -> Option<(ReadRequest, ReadRequest)> {
    let served = &request.points;
    // The points are in address order (the planner sorted them); the best boundary `k` splits
    // them into `..k` and `k..`.
    let mut best: Option<(i64, usize)> = None;
    let mut reach = 0u32;
    for k in 1..served.len() {
        let before = &points[served[k - 1]];
        reach = reach.max(u32::from(before.address) + u32::from(before.width));
        let at = &points[served[k]];
        if at.address <= before.address {
            continue;
        }
        let gap = i64::from(at.address) - i64::from(reach);
        let middle = (served.len() as i64 / 2 - k as i64).abs();
        // Widest gap first; among equals (touching points), the one nearest the middle.
        let better = match best {
            None => true,
            Some((best_gap, best_k)) => {
                gap > best_gap
                    || (gap == best_gap && middle < (served.len() as i64 / 2 - best_k as i64).abs())
            }
        };
        if better {
            best = Some((gap, k));
        }
    }
    let (_, k) = best?;
    Some((
        covering(points, request.function, &served[..k]),
        covering(points, request.function, &served[k..]),
    ))
}

/// The read covering `served`.
fn covering(points: &[PlannedPoint], function: Function, served: &[usize]) -> ReadRequest {
    let start = served.iter().map(|&p| points[p].address).min().unwrap_or(0);
    let end = served
        .iter()
        .map(|&p| u32::from(points[p].address) + u32::from(points[p].width))
        .max()
        .unwrap_or(u32::from(start));
    ReadRequest {
        function,
        start,
        count: u16::try_from(end - u32::from(start)).unwrap_or(u16::MAX),
        points: served.to_vec(),
    }
}

/// Lessons kept across restarts, one file per bus (`data_dir/modbus/lessons-<bus>.json`, only
/// its bus task writes it): by device id, the barriers as (function code, start, end), the
/// refused points by name, and when they were learned (Unix seconds), so that a restart
/// neither forgets them nor keeps them past [`REPROBE_AFTER`].
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct LessonFile {
    pub devices: std::collections::BTreeMap<String, Kept>,
}

/// One device's lessons as kept on the card.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Kept {
    pub learned_unix_s: i64,
    pub barriers: Vec<(u8, u16, u16)>,
    pub refused: Vec<String>,
}

/// Where a bus keeps its lessons.
pub fn lesson_path(data_dir: &std::path::Path, bus: &str) -> std::path::PathBuf {
    let name: String = bus
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir.join("modbus").join(format!("lessons-{name}.json"))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl LessonFile {
    /// The file at `path`; empty when it is missing or unreadable (logged: the lessons are
    /// learned again at the first refused read).
    pub fn read(path: &std::path::Path) -> LessonFile {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "Unreadable adaptive-read lessons; learning them again");
                LessonFile::default()
            }),
            Err(_) => LessonFile::default(),
        }
    }

    /// `device`'s kept lessons as [`Lessons`] over `points`, unless they are past
    /// [`REPROBE_AFTER`].
    pub fn lessons(&self, device: &str, points: &[PlannedPoint]) -> Lessons {
        let mut lessons = Lessons::default();
        let Some(kept) = self.devices.get(device) else {
            return lessons;
        };
        let age = Duration::from_secs(u64::try_from(unix_now() - kept.learned_unix_s).unwrap_or(0));
        if age >= REPROBE_AFTER {
            return lessons;
        }
        for &(code, start, end) in &kept.barriers {
            if let Some(function) = Function::from_code(code) {
                lessons.barriers.insert(Barrier {
                    function,
                    start,
                    end,
                });
            }
        }
        lessons.refused.extend(
            kept.refused
                .iter()
                .filter_map(|name| points.iter().position(|p| *p.name == **name)),
        );
        if !lessons.is_empty() {
            lessons.since = Instant::now().checked_sub(age);
            lessons.reported = (lessons.barriers.clone(), lessons.refused.clone());
        }
        lessons
    }

    /// Replaces `device`'s entry with `lessons` (removes it when there are none).
    pub fn keep(&mut self, device: &str, lessons: &Lessons, points: &[PlannedPoint]) {
        if lessons.is_empty() {
            self.devices.remove(device);
            return;
        }
        let age = lessons
            .since
            .map_or(0, |since| since.elapsed().as_secs() as i64);
        self.devices.insert(
            device.to_string(),
            Kept {
                learned_unix_s: unix_now() - age,
                barriers: lessons
                    .barriers
                    .iter()
                    .map(|b| (b.function.code(), b.start, b.end))
                    .collect(),
                refused: lessons
                    .refused
                    .iter()
                    .filter_map(|&p| points.get(p).map(|p| p.name.to_string()))
                    .collect(),
            },
        );
    }
}
