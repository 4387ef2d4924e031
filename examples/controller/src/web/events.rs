//! `GET /api/v1/events`: server-sent events (browsers drop an event without data, so even
//! `hello` carries some) naming what changed (`machines`, `discoveries`,
//! `network`, `racks`, `access`), and nothing else: the page reads what it shows again.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::app::App;
use crate::state::notify::Kinds;

/// How often an idle stream sends a comment, so proxies and browsers keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The stream: a `hello` event at once (the page then knows it is connected), then one
/// `change` event per commit, its data the kinds that changed.
pub(crate) async fn stream(
    AxumState(app): AxumState<App>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = app.state.changes.subscribe();
    let events = futures_util::stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        let kinds = match receiver.recv().await {
            Ok(kinds) => kinds,
            // Announcements were missed: everything may have changed.
            Err(RecvError::Lagged(_)) => Kinds::ALL,
            Err(RecvError::Closed) => return None,
        };
        let event = Event::default().event("change").data(kinds.names());
        Some((Ok(event), Some(receiver)))
    });
    let hello =
        futures_util::stream::once(async { Ok(Event::default().event("hello").data("connected")) });
    Sse::new(futures_util::StreamExt::chain(hello, events))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
