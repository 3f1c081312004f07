//! The KPI files under `data_dir/kpi/`: `ledger.json`, the open days (replaced atomically:
//! written to a temporary file, synced, renamed), and `YYYY-MM.jsonl`, one line per closed day
//! (appended and synced when the day closes). A damaged ledger is set aside as
//! `ledger.json.bad` and counting starts again; a damaged line in a month file is skipped and
//! counted, never fatal.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::ledger::Ledger;
use super::DayRecord;

/// The KPI directory of a gateway.
#[derive(Debug, Clone)]
pub struct KpiStore {
    dir: PathBuf,
}

/// The closed days of a month, and how many lines could not be read.
#[derive(Debug, Clone, Default)]
pub struct Month {
    pub days: Vec<DayRecord>,
    pub unreadable_lines: usize,
}

impl KpiStore {
    pub fn new(data_dir: &Path) -> KpiStore {
        KpiStore {
            dir: data_dir.join("kpi"),
        }
    }

    fn ledger_path(&self) -> PathBuf {
        self.dir.join("ledger.json")
    }

    /// The saved ledger (empty when none was saved yet), without touching the file.
    pub fn read_ledger(&self) -> Result<Ledger, String> {
        let path = self.ledger_path();
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The saved ledger, or an empty one (none saved yet, or damaged and set aside).
    pub fn load_ledger(&self) -> Ledger {
        self.read_ledger().unwrap_or_else(|problem| {
            let path = self.ledger_path();
            let aside = path.with_extension("json.bad");
            let _ = fs::rename(&path, &aside);
            tracing::error!(problem = %problem, kept_as = %aside.display(), "The KPI ledger is damaged or unreadable; counting starts again");
            Ledger::default()
        })
    }

    /// Replaces the saved ledger.
    pub fn save_ledger(&self, ledger: &Ledger) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec(ledger).map_err(io::Error::other)?;
        let path = self.ledger_path();
        let temporary = path.with_extension("json.tmp");
        let mut file = File::create(&temporary)?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    /// Appends closed days to their months' files.
    pub fn append(&self, records: &[DayRecord]) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        for record in records {
            let month = record.date.get(..7).unwrap_or("unknown");
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("{month}.jsonl")))?;
            let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
            line.push(b'\n');
            file.write_all(&line)?;
            file.sync_all()?;
        }
        Ok(())
    }

    /// The closed days of `month` (`YYYY-MM`), by date; a day written twice counts once, as last
    /// written.
    pub fn month(&self, month: &str) -> io::Result<Month> {
        let path = self.dir.join(format!("{month}.jsonl"));
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Month::default()),
            Err(e) => return Err(e),
        };
        let mut days: std::collections::BTreeMap<i64, DayRecord> = Default::default();
        let mut unreadable_lines = 0;
        for line in BufReader::new(file).split(b'\n') {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<DayRecord>(&line) {
                Ok(record) => {
                    days.insert(record.day, record);
                }
                Err(_) => unreadable_lines += 1,
            }
        }
        Ok(Month {
            days: days.into_values().collect(),
            unreadable_lines,
        })
    }
}
