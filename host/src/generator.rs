//! `promolens gen`: realistic launch events at any scale, streamed to NDJSON (gzip for `.gz`).
//!
//! Users arrive over the period; each is acquired by one channel (an A, B or C code, a link QR
//! code, a shared card, or nothing) and comes back later mostly without parameters. With
//! [`GenOptions::core_events`], some sign up (more from some channels than others) minutes to
//! days after their first launch, and some of those buy, once or again, for prices a shop
//! charges ([`Conversions`]). Every query
//! form of DESIGN.md §2 appears, with Chinese values; about 1% of events are sent twice (client
//! retries with the same `event_id`) and about 0.1% of lines are malformed. Output is in time
//! order, day by day, so memory stays small whatever the size; or shuffled ([`Order::Shuffled`]),
//! as a file gathered from many senders and exports is: no order at all, and `ts` in the forms
//! different SDKs send (epoch ms, RFC 3339 in UTC or with an offset). Shuffling goes through
//! temporary bucket files beside the output, so memory stays bounded there too.

use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{Days, NaiveDate, TimeZone};
use chrono_tz::Tz;
use promolens_schemas::percent::encode_uri_component;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub events: u64,
    pub users: u64,
    pub days: u32,
    /// Last day of the period (in `tz`).
    pub end: NaiveDate,
    pub tz: Tz,
    pub project: Option<String>,
    pub seed: u64,
    pub order: Order,
    /// Also `signup` and `purchase` events (lines beyond `events`, which counts launches).
    pub core_events: bool,
}

/// The order of the lines written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// By time, day by day (what one live sender's log looks like).
    Time,
    /// No order; `ts` in mixed forms.
    Shuffled,
}

/// Lines per bucket when shuffling: each bucket is shuffled in memory.
const SHUFFLE_BUCKET_LINES: u64 = 250_000;

/// What was written.
#[derive(Debug, Default, Clone, Copy)]
pub struct GenSummary {
    pub lines: u64,
    pub retries: u64,
    pub malformed: u64,
    /// Signups and purchases among the lines.
    pub core_events: u64,
}

/// How a channel's parameters reach the mini-program.
#[derive(Clone, Copy)]
enum Form {
    /// A or C code: `path?utm_…` with each value `encodeURIComponent`ed.
    Explicit,
    /// B code: URL-encoded `scene`.
    Scene,
    /// Ordinary link QR code: URL-encoded link in `q`.
    Link,
}

struct Channel {
    scene: i32,
    form: Form,
    params: &'static [(&'static str, &'static str)],
    weight: u32,
    /// Percent of the users it acquires who sign up.
    signup_percent: u32,
}

const CHANNELS: &[Channel] = &[
    Channel {
        scene: 1047,
        form: Form::Explicit,
        params: &[
            ("utm_source", "gzh"),
            ("utm_medium", "menu"),
            ("utm_campaign", "双11"),
        ],
        weight: 20,
        signup_percent: 35,
    },
    Channel {
        scene: 1048,
        form: Form::Explicit,
        params: &[
            ("utm_source", "公众号推文"),
            ("utm_medium", "article"),
            ("utm_campaign", "双11"),
            ("utm_content", "头条"),
        ],
        weight: 12,
        signup_percent: 25,
    },
    Channel {
        scene: 1047,
        form: Form::Scene,
        params: &[("utm_source", "px1"), ("utm_medium", "poster")],
        weight: 10,
        signup_percent: 20,
    },
    Channel {
        scene: 1049,
        form: Form::Scene,
        params: &[("c", "k7f3a2"), ("utm_source", "partner")],
        weight: 6,
        signup_percent: 30,
    },
    Channel {
        scene: 1011,
        form: Form::Explicit,
        params: &[
            ("utm_source", "shop"),
            ("utm_medium", "qrcode"),
            ("utm_campaign", "门店开业"),
        ],
        weight: 8,
        signup_percent: 40,
    },
    Channel {
        scene: 1011,
        form: Form::Link,
        params: &[
            ("utm_source", "海报"),
            ("utm_medium", "offline"),
            ("utm_campaign", "spring sale"),
            ("utm_term", "a+b"),
        ],
        weight: 6,
        signup_percent: 15,
    },
    Channel {
        scene: 1012,
        form: Form::Link,
        params: &[("c", "lnk42"), ("utm_source", "flyer")],
        weight: 3,
        signup_percent: 10,
    },
    Channel {
        scene: 1007,
        form: Form::Explicit,
        params: &[("utm_source", "friend"), ("utm_medium", "share")],
        weight: 10,
        signup_percent: 30,
    },
    Channel {
        scene: 1001,
        form: Form::Explicit,
        params: &[],
        weight: 15,
        signup_percent: 12,
    },
    Channel {
        scene: 1089,
        form: Form::Explicit,
        params: &[],
        weight: 10,
        signup_percent: 8,
    },
];

const PAGES: &[&str] = &["pages/index/index", "pages/item/detail", "pages/act/1111"];

fn pick_channel(rng: &mut SmallRng) -> &'static Channel {
    let total: u32 = CHANNELS.iter().map(|c| c.weight).sum();
    let mut at = rng.random_range(0..total);
    for channel in CHANNELS {
        if at < channel.weight {
            return channel;
        }
        at -= channel.weight;
    }
    &CHANNELS[0]
}

/// The `query` a launch through `channel` carries, exactly as the mini-program receives it.
fn query_json(channel: &Channel, rng: &mut SmallRng) -> String {
    let s = |t: &str| serde_json::to_string(t).unwrap_or_default();
    if channel.params.is_empty() {
        return "{}".into();
    }
    match channel.form {
        Form::Explicit => {
            let pairs: Vec<String> = channel
                .params
                .iter()
                .map(|(k, v)| format!("{}:{}", s(k), s(&encode_uri_component(v))))
                .collect();
            format!("{{{}}}", pairs.join(","))
        }
        Form::Scene => {
            let scene: Vec<String> = channel
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "{{\"scene\":{}}}",
                s(&encode_uri_component(&scene.join("&")))
            )
        }
        Form::Link => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(channel.params.iter())
                .finish();
            let link = format!("https://m.example.com/landing?{query}");
            format!(
                "{{\"q\":{},\"scancode_time\":\"{}\"}}",
                s(&encode_uri_component(&link)),
                rng.random_range(1_700_000_000..1_800_000_000u64)
            )
        }
    }
}

/// Writes the events to `out` (gzip when it ends in `.gz`).
pub fn generate(options: &GenOptions, out: &Path) -> Result<GenSummary> {
    if options.days == 0 || options.users == 0 {
        return Err(Error::invalid("days", "days and users must be at least 1"));
    }
    let file = std::fs::File::create(out)
        .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let mut writer: Box<dyn Write> = if out.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::write::GzEncoder::new(
            BufWriter::with_capacity(1 << 20, file),
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(BufWriter::with_capacity(1 << 20, file))
    };
    let io = |e| Error::io(format!("writing {}", out.display()), e);
    let summary = match options.order {
        Order::Time => write_events(options, &mut writer)?,
        Order::Shuffled => shuffled(options, out, &mut writer)?,
    };
    writer.flush().map_err(io)?;
    drop(writer);
    Ok(summary)
}

/// Writes the events in time order into buckets chosen at random, then each bucket shuffled.
fn shuffled(options: &GenOptions, out: &Path, writer: &mut dyn Write) -> Result<GenSummary> {
    use rand::seq::SliceRandom;
    use std::io::BufRead;
    let buckets = options.events.div_ceil(SHUFFLE_BUCKET_LINES).max(1) as usize;
    let paths: Vec<std::path::PathBuf> = (0..buckets)
        .map(|i| out.with_extension(format!("shuffle-{i}.tmp")))
        .collect();
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |e| Error::io(format!("shuffling through {path}"), e)
    };
    let mut files = paths
        .iter()
        .map(|p| std::fs::File::create(p).map(BufWriter::new).map_err(io(p)))
        .collect::<Result<Vec<_>>>()?;
    let mut rng = SmallRng::seed_from_u64(options.seed ^ 0x5eed);
    let summary = {
        let mut spread = Spread {
            files: &mut files,
            rng: &mut rng,
            line: Vec::new(),
        };
        write_events(options, &mut spread)?
    };
    for (file, path) in files.into_iter().zip(&paths) {
        file.into_inner()
            .map_err(|e| e.into_error())
            .map_err(io(path))?;
    }
    for path in &paths {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let mut lines: Vec<String> = std::io::BufReader::new(file)
            .lines()
            .collect::<std::io::Result<_>>()
            .map_err(io(path))?;
        lines.shuffle(&mut rng);
        for line in lines {
            writeln!(writer, "{line}").map_err(io(out))?;
        }
        std::fs::remove_file(path).map_err(io(path))?;
    }
    Ok(summary)
}

/// A writer that sends each whole line to one of `files` at random.
struct Spread<'a> {
    files: &'a mut [BufWriter<std::fs::File>],
    rng: &'a mut SmallRng,
    line: Vec<u8>,
}

impl Write for Spread<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for &b in bytes {
            self.line.push(b);
            if b == b'\n' {
                let bucket = self.rng.random_range(0..self.files.len());
                self.files[bucket].write_all(&self.line)?;
                self.line.clear();
            }
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        for file in self.files.iter_mut() {
            file.flush()?;
        }
        Ok(())
    }
}

/// `ts` as JSON, in one of the forms senders use (shuffled output only): epoch milliseconds,
/// RFC 3339 in UTC, or RFC 3339 with the +08:00 offset of China.
fn ts_json(ts: i64, order: Order, rng: &mut SmallRng) -> String {
    if order == Order::Time {
        return ts.to_string();
    }
    let Some(utc) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ts) else {
        return ts.to_string();
    };
    match rng.random_range(0..4) {
        0 => format!("\"{}\"", utc.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
        1 => format!(
            "\"{}\"",
            utc.with_timezone(&chrono_tz::Asia::Shanghai)
                .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        ),
        _ => ts.to_string(),
    }
}

/// Signups and purchases of the users acquired so far, scheduled for later, written in time
/// order between the launches. They draw from their own generator, so that the launches are
/// the same with and without them.
struct Conversions {
    rng: SmallRng,
    /// (time, sequence, line): the earliest first.
    due: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u64, String)>>,
    sequence: u64,
    seed: u32,
    project: String,
}

/// What a shop sells, yuan.
const PRICES: [f64; 9] = [9.9, 19.9, 39.0, 59.0, 88.0, 128.0, 199.0, 299.0, 499.0];

const MINUTE_MS: i64 = 60_000;

impl Conversions {
    fn new(options: &GenOptions, project: &str) -> Conversions {
        Conversions {
            rng: SmallRng::seed_from_u64(options.seed ^ 0xc0_4e_e7),
            due: Default::default(),
            sequence: 0,
            seed: options.seed as u32,
            project: project.to_string(),
        }
    }

    /// A user acquired by `channel` at `ts`: maybe a signup, then maybe purchases.
    fn acquired(&mut self, user: u64, channel: &Channel, ts: i64) {
        if !self.rng.random_ratio(channel.signup_percent, 100) {
            return;
        }
        // Most sign up in the first visit, some come back to it within days.
        let lag = match self.rng.random_range(0..10) {
            0..6 => self.rng.random_range(1..60) * MINUTE_MS,
            6..9 => self.rng.random_range(60..3 * 24 * 60) * MINUTE_MS,
            _ => self.rng.random_range(3 * 24 * 60..14 * 24 * 60) * MINUTE_MS,
        };
        let signed_up = ts + lag;
        let method = ["wechat_phone", "form"][self.rng.random_range(0..2usize)];
        self.schedule(
            signed_up,
            user,
            "signup",
            format!("{{\"method\":\"{method}\"}}"),
        );
        if !self.rng.random_ratio(35, 100) {
            return;
        }
        let mut at = signed_up;
        loop {
            at += self.rng.random_range(2..10 * 24 * 60) * MINUTE_MS;
            let quantity = self.rng.random_range(1..=3u32);
            let price = PRICES[self.rng.random_range(0..PRICES.len())];
            let amount = (price * f64::from(quantity) * 100.0).round() / 100.0;
            let sku = self.rng.random_range(100..140);
            self.schedule(
                at,
                user,
                "purchase",
                format!("{{\"amount\":{amount},\"currency\":\"CNY\",\"sku\":\"SKU-{sku}\",\"quantity\":{quantity}}}"),
            );
            if !self.rng.random_ratio(1, 4) {
                break;
            }
        }
    }

    fn schedule(&mut self, ts: i64, user: u64, event: &str, props: String) {
        self.sequence += 1;
        let line = format!(
            "{{\"event\":\"{event}\",\"event_id\":\"{:08x}-e{:09x}\",\"user_id\":\"anon-{user}\",\"ts\":{ts},\"sent_at\":{}{},\"props\":{props}}}",
            self.seed,
            self.sequence,
            ts + self.rng.random_range(5..3000),
            self.project,
        );
        self.due.push(std::cmp::Reverse((ts, self.sequence, line)));
    }

    /// Writes the events due before `until` (ms).
    fn write_due(
        &mut self,
        until: i64,
        writer: &mut dyn Write,
        summary: &mut GenSummary,
    ) -> std::io::Result<()> {
        while let Some(std::cmp::Reverse((ts, _, _))) = self.due.peek()
            && *ts < until
        {
            if let Some(std::cmp::Reverse((_, _, line))) = self.due.pop() {
                writeln!(writer, "{line}")?;
                summary.lines += 1;
                summary.core_events += 1;
            }
        }
        Ok(())
    }
}

/// Writes the events in time order to `writer`.
fn write_events(options: &GenOptions, writer: &mut dyn Write) -> Result<GenSummary> {
    let io = |e| Error::io("writing events".to_string(), e);
    let mut rng = SmallRng::seed_from_u64(options.seed);
    let mut seen = vec![0u64; options.users.div_ceil(64) as usize];
    let mut summary = GenSummary::default();
    let mut counter = 0u64;
    let project = options
        .project
        .as_ref()
        .map(|p| {
            format!(
                ",\"project\":{}",
                serde_json::to_string(p).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let mut conversions = options
        .core_events
        .then(|| Conversions::new(options, &project));
    let first_day = options.end - Days::new(u64::from(options.days - 1));
    let mut period_end = 0;
    for day_index in 0..u64::from(options.days) {
        let day = first_day + Days::new(day_index);
        let day_start = options
            .tz
            .from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .map(|t| t.timestamp_millis())
            .unwrap_or_default();
        // Spread events evenly over days; the remainder goes to the first days.
        let per_day = options.events / u64::from(options.days)
            + u64::from(day_index < options.events % u64::from(options.days));
        let mut times: Vec<i64> = (0..per_day)
            .map(|_| day_start + rng.random_range(0..86_400_000))
            .collect();
        times.sort_unstable();
        // Users arrive over the period: on day d, users 0..U·(d+1)/D exist.
        let existing = (options.users * (day_index + 1))
            .div_ceil(u64::from(options.days))
            .max(1);
        period_end = options
            .tz
            .from_local_datetime(
                &(day + Days::new(1))
                    .and_hms_opt(0, 0, 0)
                    .unwrap_or_default(),
            )
            .earliest()
            .map(|t| t.timestamp_millis())
            .unwrap_or(day_start + 86_400_000);
        for ts in times {
            if let Some(conversions) = &mut conversions {
                conversions
                    .write_due(ts, writer, &mut summary)
                    .map_err(io)?;
            }
            counter += 1;
            if rng.random_ratio(1, 1000) {
                writeln!(writer, "{}", malformed(&mut rng, ts, counter)).map_err(io)?;
                summary.lines += 1;
                summary.malformed += 1;
                continue;
            }
            let user = rng.random_range(0..existing);
            let (word, bit) = ((user / 64) as usize, 1u64 << (user % 64));
            let first = seen[word] & bit == 0;
            seen[word] |= bit;
            let channel = if first || rng.random_ratio(2, 5) {
                pick_channel(&mut rng)
            } else {
                &CHANNELS[8 + rng.random_range(0..2usize)]
            };
            if let (true, Some(conversions)) = (first, &mut conversions) {
                conversions.acquired(user, channel, ts);
            }
            let launch_type = if first || rng.random_ratio(7, 10) {
                "cold"
            } else {
                "hot"
            };
            let line = format!(
                "{{\"event_id\":\"{:08x}-{counter:010x}\",\"user_id\":\"anon-{user}\",\"ts\":{},\"sent_at\":{},\"scene\":{},\"path\":\"{}\",\"query\":{},\"launch_type\":\"{launch_type}\"{project},\"props\":{{\"app_version\":\"3.{}.0\",\"os\":\"{}\"}}}}",
                options.seed as u32,
                ts_json(ts, options.order, &mut rng),
                ts + rng.random_range(5..3000),
                channel.scene,
                PAGES[rng.random_range(0..PAGES.len())],
                query_json(channel, &mut rng),
                rng.random_range(0..4),
                if rng.random_bool(0.55) {
                    "Android"
                } else {
                    "iOS"
                },
            );
            writeln!(writer, "{line}").map_err(io)?;
            summary.lines += 1;
            if rng.random_ratio(1, 100) {
                // A retry after a lost answer: the same event, sent again.
                writeln!(writer, "{line}").map_err(io)?;
                summary.lines += 1;
                summary.retries += 1;
            }
        }
    }
    // Conversions of the last day's users that fall after the period are left out.
    if let Some(conversions) = &mut conversions {
        conversions
            .write_due(period_end, writer, &mut summary)
            .map_err(io)?;
    }
    Ok(summary)
}

fn malformed(rng: &mut SmallRng, ts: i64, counter: u64) -> String {
    match rng.random_range(0..5) {
        0 => format!("{{\"event_id\":\"bad-{counter}\",\"ts\":{ts}}}"),
        1 => format!("{{\"event_id\":\"bad-{counter}\",\"user_id\":\"u\",\"ts\":\"yesterday\"}}"),
        2 => format!(
            "{{\"event_id\":\"bad-{counter}\",\"user_id\":\"u\",\"ts\":{ts},\"query\":{{\"utm_source\":42}}}}"
        ),
        3 => format!("{{\"event_id\":\"bad-{counter}\",\"user_id\":\"u\",\"ts\":{ts},\"scene\":10"),
        _ => "not json at all".to_string(),
    }
}
