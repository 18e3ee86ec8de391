//! What a test asks of a real browser, whichever drives it: headless Chromium through
//! chromedriver (W3C WebDriver over HTTP, `webdriver.rs`) or headless Firefox through its
//! built-in Marionette port (`marionette.rs`). A scenario written against [`Browser`] runs
//! unchanged in both.
//!
//! Implementations give the few commands each protocol has (open, find, click, type, run a
//! script, resize, screenshot); the waits and conveniences are here, once, every one
//! bounded.

use crate::common::wait_until;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The W3C key of an element reference (the same in WebDriver and Marionette).
pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session, owned by the test: dropping it ends the session and kills the
/// browser.
pub trait Browser {
    /// Which browser this is, for messages and screenshot folders (`chromium`, `firefox`).
    fn name(&self) -> &'static str;

    /// Opens `url` (waits for the page to load).
    fn goto(&self, url: &str);

    /// The element `css` selects now, if any: its reference.
    fn find(&self, css: &str) -> Option<String>;

    /// Clicks the element with reference `id` (an `<option>` is selected by clicking it).
    fn click_element(&self, id: &str);

    /// Types `text` into the element with reference `id`.
    fn type_into_element(&self, id: &str, text: &str);

    /// Runs `body` (a function body: `return …`) in the page and gives what it returned.
    fn script(&self, body: &str) -> Value;

    /// Resizes the window (a phone's screen, say).
    fn resize(&self, width: u32, height: u32);

    /// A screenshot of the window: a PNG in base64, as both protocols send it.
    fn screenshot_base64(&self) -> String;

    /// Waits (at most 10 s) for `css` to select an element, and gives it.
    fn element(&self, css: &str) -> String {
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.find(css)
        })
        .unwrap_or_else(|| panic!("{}: no element {css:?} on the page", self.name()))
    }

    /// Clicks the element `css` selects.
    fn click(&self, css: &str) {
        let id = self.element(css);
        self.click_element(&id);
    }

    /// Types `text` into the element `css` selects.
    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.type_into_element(&id, text);
    }

    /// Polls `body` every 25 ms until it returns `want`, at most `limit`: how long it
    /// took, or None (the last value is in the panic of the caller's choosing).
    fn wait_for(&self, limit: Duration, body: &str, want: &Value) -> Option<Duration> {
        let start = Instant::now();
        wait_until(limit, Duration::from_millis(25), || {
            (self.script(body) == *want).then(|| start.elapsed())
        })
    }

    /// Writes a PNG screenshot of the window to `path`.
    fn screenshot(&self, path: &Path) -> PathBuf {
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(self.screenshot_base64())
            .expect("a PNG in base64");
        std::fs::write(path, png).unwrap();
        path.to_path_buf()
    }
}
