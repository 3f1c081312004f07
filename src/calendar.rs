//! Calendar arithmetic on day numbers (days since 1970-01-01): dates for KPI days and for the
//! times in alarm messages, without a time-zone database (China has one offset, UTC+8).

/// `YYYY-MM-DD` of a local day number (proleptic Gregorian).
pub fn date_of(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The local day number of `YYYY-MM-DD`.
pub fn day_of(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(y, m, d);
    (civil_from_days(day) == (y, m, d)).then_some(day)
}

/// Year, month and day of a day number (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A season of every year, from one month and day to another, both inclusive; it may run over
/// the new year (the heating season, 10-15 to 04-15 in Shuozhou).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Season {
    pub start: (u32, u32),
    pub end: (u32, u32),
}

impl Season {
    /// Whether local day `day` is in the season.
    pub fn contains(&self, day: i64) -> bool {
        self.started_on(day).is_some()
    }

    /// The local day on which the season that `day` is in began; `None` outside the season.
    pub fn started_on(&self, day: i64) -> Option<i64> {
        let (year, m, d) = civil_from_days(day);
        let date = (m as u32) * 100 + d as u32;
        let (start, end) = (
            self.start.0 * 100 + self.start.1,
            self.end.0 * 100 + self.end.1,
        );
        let start_in =
            |year: i64| days_from_civil(year, i64::from(self.start.0), i64::from(self.start.1));
        if start <= end {
            (start..=end).contains(&date).then(|| start_in(year))
        } else if date >= start {
            Some(start_in(year))
        } else {
            (date <= end).then(|| start_in(year - 1))
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` of `time_ns` at UTC+`offset_s`.
pub fn local_time(time_ns: i64, offset_s: i64) -> String {
    let seconds = time_ns.div_euclid(1_000_000_000) + offset_s;
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02}:{:02}",
        date_of(days),
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_day_numbers_round_trip() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(day_of("2026-11-26"), Some(20_783));
        assert_eq!(date_of(20_783), "2026-11-26");
        assert_eq!(
            day_of("2024-02-29").map(date_of).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(day_of("2025-02-29"), None);
        assert_eq!(day_of("2025-13-01"), None);
        assert_eq!(day_of("26-11"), None);
    }

    #[test]
    fn a_season_over_the_new_year_knows_the_day_it_began() {
        let heating = Season {
            start: (10, 15),
            end: (4, 15),
        };
        let day = |date: &str| day_of(date).unwrap();
        assert_eq!(
            heating.started_on(day("2025-10-15")),
            Some(day("2025-10-15"))
        );
        assert_eq!(
            heating.started_on(day("2025-12-31")),
            Some(day("2025-10-15"))
        );
        assert_eq!(
            heating.started_on(day("2026-04-15")),
            Some(day("2025-10-15"))
        );
        assert_eq!(heating.started_on(day("2026-04-16")), None);
        assert_eq!(heating.started_on(day("2025-10-14")), None);
        assert!(!heating.contains(day("2026-07-01")));
        let summer = Season {
            start: (6, 1),
            end: (8, 31),
        };
        assert_eq!(
            summer.started_on(day("2026-07-01")),
            Some(day("2026-06-01"))
        );
        assert!(!summer.contains(day("2026-09-01")));
    }
}
