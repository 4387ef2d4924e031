//! Headless Chromium for the web dashboard's tests, through chromedriver (WebDriver): a
//! session, logging in through the form, waiting for what the page shows, and screenshots at
//! desktop and phone sizes.
//!
//! The browser must reach the controller's loopback API, so a test runs its browser half in
//! the controller's namespace: it starts its own test binary again there (an ignored test
//! that reads what it needs from `MAAS_WEB_*`) and checks that run passed.

// Each test binary uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::netns::Daemon;

/// How long a page may take to show what a step waits for.
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// The sizes every screenshot is taken at: a desktop and a phone.
const SIZES: [(u32, u32); 2] = [(1280, 800), (390, 844)];

/// Where screenshots go: `target/artifacts/screenshots/` of the workspace (made if missing).
pub(crate) fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// A WebDriver session with headless Chromium; chromedriver (and Chromium with it, in its
/// process group) is killed on drop.
pub(crate) struct Browser {
    pub(crate) client: Client,
    _driver: Daemon,
}

impl Browser {
    /// chromedriver on a free loopback port (living at most `lifetime`), and a session with a
    /// fresh profile under `scratch`.
    pub(crate) async fn start(scratch: &Path, lifetime: Duration) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &lifetime.as_secs().to_string(), "chromedriver"])
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                scratch.join("chromedriver.log").display()
            ));
        let driver = Daemon::spawn("chromedriver", cmd);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen\n{}",
                driver.transcript()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = scratch.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let mut caps = serde_json::Map::new();
        // Without the background-networking flags Chromium tries to reach the internet.
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.display())],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with Chromium");
        Self {
            client,
            _driver: driver,
        }
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub(crate) async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// A WebDriver error as text.
pub(crate) fn e(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// Logs in through the form at `url` with `token`, and waits for the machines page and its
/// live updates.
pub(crate) async fn login(c: &Client, url: &str, token: &str) -> Result<(), String> {
    c.goto(&format!("{url}/login")).await.map_err(e)?;
    let input = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#token"))
        .await
        .map_err(e)?;
    input.send_keys(token).await.map_err(e)?;
    c.find(Locator::Css("#login"))
        .await
        .map_err(e)?
        .click()
        .await
        .map_err(e)?;
    wait_text(c, "h1", |t| t.starts_with("Machines")).await?;
    let deadline = Instant::now() + WAIT;
    while c
        .execute("return document.body.dataset.live", vec![])
        .await
        .map_err(e)?
        != "on"
    {
        if Instant::now() > deadline {
            return Err("the event stream did not connect".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Screenshots of the page at each of [`SIZES`], as `dir/NAME-WxH.png`.
pub(crate) async fn screenshots(c: &Client, dir: &Path, name: &str) -> Result<(), String> {
    for (w, h) in SIZES {
        c.set_window_size(w, h).await.map_err(e)?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let png = c.screenshot().await.map_err(e)?;
        let path = dir.join(format!("{name}-{w}x{h}.png"));
        std::fs::write(&path, png).map_err(|e| e.to_string())?;
        println!("screenshot {}", path.display());
    }
    c.set_window_size(SIZES[0].0, SIZES[0].1).await.map_err(e)
}

/// Fails when the page at each of [`SIZES`] scrolls sideways (a wide table scrolls inside its
/// own box instead), naming the elements that stick out of the window.
pub(crate) async fn fits_the_width(c: &Client, name: &str) -> Result<(), String> {
    const PROBE: &str = r#"
        const d = document.documentElement;
        if (d.scrollWidth <= d.clientWidth) return null;
        const out = [...document.querySelectorAll('body *')]
          .filter((el) => !el.parentElement.closest('.scroll, pre')
            && el.getBoundingClientRect().right > d.clientWidth + 0.5)
          .slice(0, 6)
          .map((el) => `${el.tagName.toLowerCase()}.${el.className} (right ${Math.round(el.getBoundingClientRect().right)})`);
        return `${d.scrollWidth} > ${d.clientWidth}: ${out.join(', ')}`;
    "#;
    for (w, h) in SIZES {
        c.set_window_size(w, h).await.map_err(e)?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let wide = c.execute(PROBE, vec![]).await.map_err(e)?;
        if let Some(what) = wide.as_str() {
            return Err(format!("{name} at {w}x{h} scrolls sideways: {what}"));
        }
    }
    c.set_window_size(SIZES[0].0, SIZES[0].1).await.map_err(e)
}

/// The text of the first element `css` matches once `ok` holds for it (at most [`WAIT`]).
pub(crate) async fn wait_text(
    c: &Client,
    css: &str,
    ok: impl Fn(&str) -> bool,
) -> Result<String, String> {
    wait_text_within(c, css, ok, WAIT).await
}

/// The text of the first element `css` matches once `ok` holds for it (at most `within`).
pub(crate) async fn wait_text_within(
    c: &Client,
    css: &str,
    ok: impl Fn(&str) -> bool,
    within: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(text) = el.text().await
        {
            if ok(text.trim()) {
                return Ok(text.trim().to_string());
            }
            last = text;
        }
        if Instant::now() > deadline {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            return Err(format!("{css} on {url}: last text {last:?}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The attribute `name` of the first element `css` matches, once it exists (at most [`WAIT`]).
pub(crate) async fn wait_attr(c: &Client, css: &str, name: &str) -> Result<String, String> {
    let el = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .map_err(e)?;
    el.attr(name)
        .await
        .map_err(e)?
        .ok_or_else(|| format!("{css} has no {name}"))
}

/// Clicks the first element `css` matches.
pub(crate) async fn click(c: &Client, css: &str) -> Result<(), String> {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .map_err(e)?
        .click()
        .await
        .map_err(e)
}

/// Whether Chromium and its driver are here; when they are not, says that `test` goes on
/// without the dashboard and does `instead`.
pub(crate) fn present(test: &str, instead: &str) -> bool {
    let present = ["chromium", "chromedriver"]
        .iter()
        .all(|tool| crate::support::which(tool).is_some());
    if !present {
        eprintln!("{test}: no chromium/chromedriver: {instead}");
    }
    present
}

/// Runs `story` in a fresh browser session (chromedriver living at most `lifetime`, its
/// profile under `scratch`) on a runtime of its own; closes the session, then fails the test
/// with the story's error if it has one.
pub(crate) fn run_story<F>(scratch: &Path, lifetime: Duration, story: impl FnOnce(Client) -> F)
where
    F: Future<Output = Result<(), String>>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let browser = Browser::start(scratch, lifetime).await;
            let result = story(browser.client.clone()).await;
            browser.close().await;
            if let Err(e) = result {
                panic!("{e}");
            }
        });
}

/// Waits (at most `within`) for a browser half started with [`Daemon::spawn`] and fails the
/// test unless it passed; prints its output.
pub(crate) fn passed(mut run: Daemon, within: Duration) {
    let status = run.wait_exit(within);
    let output = run.lines().join("\n");
    assert!(
        status.is_some_and(|s| s.success()) && output.contains("test result: ok. 1 passed"),
        "the dashboard run failed ({status:?}):\n{output}"
    );
    println!("{output}");
}
