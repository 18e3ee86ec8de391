//! The live presence board: its page (served at `/board`, embedded in the binary), and how
//! presence changes reach the open pages.
//!
//! - The core notes who changed ([`crate::core::board::BoardFeed`]); after every turn the
//!   daemon's loop hands those people's rows to the [`Publisher`], which numbers them and
//!   sends each once on a `tokio::sync::broadcast` channel (rendered to JSON once, shared by
//!   every stream). While no page is open (no stream holds one of the [`Hub`]'s slots), the
//!   feed is off and nothing is noted.
//! - `GET /v1/presence/events` (server-sent events) subscribes to that channel, asks the
//!   loop for everyone's rows with the number of the last change published
//!   ([`BoardSnapshot`]), sends them as one `snapshot` event, then each later change as a
//!   `person` (or `gone`) event, skipping those the snapshot already has. A stream that
//!   falls behind the channel's capacity gets a fresh snapshot instead of what it missed.
//! - EventSource cannot send an Authorization header: the page trades its bearer token for
//!   a ticket (`POST /v1/presence/events/ticket`), single-use and valid for
//!   [`TICKET_LIFETIME`], and opens the stream with it in the query string. A ticket that
//!   shows up in a log is worthless by then; the token never goes in a URL.
//! - Bounded: at most [`Hub::new`]'s number of streams at once (the next are answered 503),
//!   at most [`MAX_TICKETS`] unredeemed tickets, a stream ends after [`STREAM_LIFETIME`]
//!   (the page asks for a new ticket, so a token removed from the policy stops seeing the
//!   board), and the channel holds [`CHANNEL_CAPACITY`] changes.

use crate::core::Core;
use crate::presence_service::PresenceView;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_policy::Policy;
use tokio::sync::{broadcast, Semaphore};

/// The page.
pub const INDEX_HTML: &str = include_str!("../board/index.html");
/// Its script (an ES module).
pub const APP_JS: &str = include_str!("../board/board.js");
/// Its style sheet.
pub const STYLE_CSS: &str = include_str!("../board/board.css");

/// How long a ticket may wait to be redeemed.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);
/// The most tickets issued and not yet redeemed (expired ones are dropped first).
pub const MAX_TICKETS: usize = 1024;
/// How long one event stream lasts before the page must ask for a new ticket.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Changes the channel holds for a stream that has not read them yet.
pub const CHANNEL_CAPACITY: usize = 1024;

/// One change as every open board receives it.
#[derive(Debug)]
pub struct BoardEvent {
    /// Its number: one more than the change before.
    pub seq: u64,
    /// `person` (the row as it is now) or `gone` (no longer in the policy).
    pub kind: &'static str,
    /// The JSON of the event (a row as `GET /v1/presence` shows it with `name` and
    /// `extension`, or `{"user": …}`).
    pub data: String,
}

/// Everyone's rows, and the number of the last change published before they were read.
#[derive(Debug)]
pub struct BoardSnapshot {
    pub seq: u64,
    pub people: Vec<Value>,
}

/// The loop's side: numbers the changes and sends them to every open board.
#[derive(Debug)]
pub struct Publisher {
    tx: broadcast::Sender<Arc<BoardEvent>>,
    /// The streams' slots: a board is open while one is taken (an atomic read per turn).
    streams: Arc<Semaphore>,
    max_streams: usize,
    seq: u64,
    offline_shown: bool,
}

impl Publisher {
    /// After each turn of the loop: turns the core's feed on or off as boards are open or
    /// not, and publishes the rows of the people who changed.
    pub fn turn(&mut self, core: &mut Core, unix: u64) {
        let on = self.streams.available_permits() < self.max_streams;
        core.board_on(on);
        if !on {
            return;
        }
        let changes = core.board_changes(unix);
        let policy = core.directory().policy();
        for (user, view) in changes {
            self.seq += 1;
            let (kind, data) = match view {
                Some(v) => ("person", row(&v, self.offline_shown, policy)),
                None => ("gone", json!({ "user": user })),
            };
            let _ = self.tx.send(Arc::new(BoardEvent {
                seq: self.seq,
                kind,
                data: data.to_string(),
            }));
        }
    }

    /// Everyone's rows now, for a board that opens (answered on the loop, between two
    /// turns: every change before it is published, none after it is in it).
    pub fn snapshot(&self, core: &Core, unix: u64) -> BoardSnapshot {
        let policy = core.directory().policy();
        BoardSnapshot {
            seq: self.seq,
            people: core
                .board_people(unix)
                .iter()
                .map(|v| row(v, self.offline_shown, policy))
                .collect(),
        }
    }
}

/// A row: a person as `GET /v1/presence` shows them, with their name and extension from
/// the policy (what colleagues know them by).
fn row(v: &PresenceView, offline_shown: bool, policy: &Policy) -> Value {
    let mut row = crate::api::person_json(v, offline_shown);
    if let Some(u) = policy.user(&v.user) {
        row["name"] = json!(u.display_name);
        row["extension"] = json!(u.extension);
    }
    row
}

/// The API's side: subscribing, the cap on streams, the tickets.
#[derive(Clone, Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<BoardEvent>>,
    pub(crate) streams: Arc<Semaphore>,
    max_streams: usize,
    tickets: Arc<Mutex<Tickets>>,
}

impl Hub {
    /// A hub allowing `max_streams` event streams at once, and its publisher.
    pub fn new(max_streams: usize, offline_shown: bool) -> (Hub, Publisher) {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let max_streams = max_streams.max(1);
        let streams = Arc::new(Semaphore::new(max_streams));
        (
            Hub {
                tx: tx.clone(),
                streams: streams.clone(),
                max_streams,
                tickets: Arc::new(Mutex::new(Tickets::default())),
            },
            Publisher {
                tx,
                streams,
                max_streams,
                seq: 0,
                offline_shown,
            },
        )
    }

    /// The most streams open at once.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// A receiver of the changes published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BoardEvent>> {
        self.tx.subscribe()
    }

    /// A new ticket for `who` (None: too many unredeemed tickets).
    pub fn issue(&self, who: &str, admin: bool) -> Option<String> {
        let mut t = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        t.issue(who, admin, Instant::now())
    }

    /// Who a ticket was issued to, if it is valid; it is used up either way.
    pub fn redeem(&self, ticket: &str) -> Option<(String, bool)> {
        let mut t = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        t.redeem(ticket, Instant::now())
    }
}

/// Tickets issued and not yet redeemed.
#[derive(Debug, Default)]
struct Tickets {
    open: HashMap<String, Ticket>,
}

#[derive(Debug)]
struct Ticket {
    who: String,
    admin: bool,
    expires: Instant,
}

impl Tickets {
    fn issue(&mut self, who: &str, admin: bool, now: Instant) -> Option<String> {
        if self.open.len() >= MAX_TICKETS {
            self.open.retain(|_, t| t.expires > now);
            if self.open.len() >= MAX_TICKETS {
                return None;
            }
        }
        let bytes: [u8; 24] = rand::random();
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.open.insert(
            ticket.clone(),
            Ticket {
                who: who.to_string(),
                admin,
                expires: now + TICKET_LIFETIME,
            },
        );
        Some(ticket)
    }

    fn redeem(&mut self, ticket: &str, now: Instant) -> Option<(String, bool)> {
        let t = self.open.remove(ticket)?;
        (t.expires > now).then_some((t.who, t.admin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_single_use_short_lived_and_bounded() {
        let mut t = Tickets::default();
        let now = Instant::now();
        let a = t.issue("alice", false, now).unwrap();
        assert_eq!(a.len(), 48);
        assert_eq!(t.redeem("nonsense", now), None);
        assert_eq!(t.redeem(&a, now), Some(("alice".into(), false)));
        assert_eq!(t.redeem(&a, now), None, "used up");
        let b = t.issue("admin", true, now).unwrap();
        assert_eq!(t.redeem(&b, now + TICKET_LIFETIME), None, "expired");
        for _ in 0..MAX_TICKETS {
            t.issue("bob", false, now).unwrap();
        }
        assert_eq!(t.issue("bob", false, now), None, "full of live tickets");
        // Once they have expired, room again.
        assert!(t.issue("bob", false, now + TICKET_LIFETIME).is_some());
        assert_eq!(t.open.len(), 1);
    }

    #[test]
    fn the_page_is_embedded_and_loads_nothing_from_elsewhere() {
        assert!(INDEX_HTML.contains("/board/board.js"));
        assert!(INDEX_HTML.contains("/board/board.css"));
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(APP_JS.contains("/v1/presence/events/ticket"));
    }
}
